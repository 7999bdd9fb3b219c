"""The RabbitMQ tap against the machine's RabbitMQ: every exchange type through bindings,
everything (the default exchange too) through the firehose, stored once, acked after the
commit, application queues untouched."""
import uuid

from collector.models import Event
from tests.brokers.rabbit import api, declare, publish, rabbit_broker
from tests.conftest import run_async, wait_until


def tap_ready(running, broker):
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    return running.collector.taps.adapter_named(broker.name)


def test_the_tap_binds_every_exchange_type_and_stores_each_message_once(vhost, run_collector, settings,
                                                                         viewer_client):
    """Without the firehose: `#` on topic, any key on fanout, each bound key on direct,
    x-match all on headers; the default exchange is listed as not covered."""
    settings.RABBITMQ_FIREHOSE = False
    run_async(declare(vhost, [("shop", "topic"), ("news", "fanout"), ("mail", "direct"), ("props", "headers")],
                      [("mailer", "mail", "send", None), ("orders", "shop", "order.*", None)]))
    broker = rabbit_broker(vhost)
    from collector.ingest.configuration import load_configuration

    running = run_collector(brokers=[load_configuration()[0], broker])
    adapter = tap_ready(running, broker)
    assert {"shop", "news", "mail", "props"} <= {n for n, s in adapter.streams.items() if s.observed}
    assert not adapter.streams["amq.default"].observed
    marker = uuid.uuid4().hex
    run_async(publish(vhost, [
        ("shop", "order.created", b'{"id": 1}', {"ce-type": "order.created"}, {"message_id": marker}),
        ("news", "", b"hello", None, {"content_type": "text/plain", "app_id": "newsroom", "type": "news.posted"}),
        ("mail", "send", b'{"to": "a@b"}', None, None),
        ("props", "ignored", b"h", {"kind": "x"}, None),
        ("", "mailer", b"direct to a queue", None, None),  # default exchange: not covered here
    ]))
    stored = Event.objects.filter(broker=broker)
    wait_until(lambda: stored.count() >= 4, 30, "four tapped messages")
    rows = {(e.stream, e.subject) for e in stored}
    assert rows == {("shop", "order.created"), ("news", "news"), ("mail", "send"), ("props", "props")}
    order = stored.get(stream="shop")
    assert order.headers["amqp-message-id"] == marker
    assert order.headers["ce-type"] == "order.created"
    news = stored.get(stream="news")  # AMQP properties decoded as the headers they stand for
    assert (news.producer, news.type) == ("newsroom", "news.posted")
    assert order.event_id == marker
    # The application's queues keep their messages: the tap took copies.
    wait_until(lambda: api("GET", f"/api/queues/{vhost.rsplit('/', 1)[1]}/mailer").get("messages") == 2, 15,
               "the mailer queue to hold its two messages")
    # The topics page says what is not covered, and why.
    running.collector.write_heartbeat()
    page = viewer_client.get("/topics/").content.decode()
    assert "amq.default" in page and "cannot be bound" in page
    # Acked after commit: the tap queue drains.
    wait_until(lambda: api("GET", f"/api/queues/{vhost.rsplit('/', 1)[1]}/eventscope.tap").get("messages") == 0, 15,
               "the tap queue to drain")


def test_the_firehose_sees_the_default_exchange_and_is_turned_on_by_the_collector(vhost, run_collector):
    from collector.ingest.configuration import load_configuration

    run_async(declare(vhost, [("shop", "topic")], [("work", None, None, None)]))
    name = vhost.rsplit("/", 1)[1]
    assert not api("GET", f"/api/vhosts/{name}")["tracing"]
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker])
    adapter = tap_ready(running, broker)
    assert adapter.firehose and api("GET", f"/api/vhosts/{name}")["tracing"]
    run_async(publish(vhost, [("", "work", b"job 1", {"attempt": 1}, None),
                              ("shop", "order.paid", b'{"id": 2}', None, {"message_id": "m-2"})]))
    stored = Event.objects.filter(broker=broker)
    wait_until(lambda: stored.count() >= 2, 30, "two messages through the firehose")
    assert {(e.stream, e.subject) for e in stored} == {("amq.default", "work"), ("shop", "order.paid")}
    assert stored.get(subject="work").headers["attempt"] == "1"
    # Copies only: the application's queue keeps its job.
    wait_until(lambda: api("GET", f"/api/queues/{name}/work").get("messages") == 1, 15, "the work queue's job")
    assert stored.count() == 2


def test_unit_the_topics_page_says_when_a_rabbitmq_tap_is_full_and_drops(viewer_client):
    """Unit test (a heartbeat as the collector writes it): a full tap is shown as a gap."""
    from django.utils import timezone

    from collector.models import CollectorHeartbeat

    now = timezone.now()
    CollectorHeartbeat.objects.create(name="c1", started=now, beat=now, counters={"brokers": {"rabbit": {
        "kind": "rabbitmq", "ready": True, "streams": {"shop": {"observed": True, "retention": "topic", "note": "bound"}},
        "counters": {"firehose": False, "management_api": True, "tap_full": True, "tap_bytes": 536_000_000,
                     "tap_limit": 536_870_912}}}})
    page = viewer_client.get("/topics/").content.decode()
    assert "bound to 1 exchange" in page and "The tap queue is full" in page and "oldest copies are being dropped" in page
