"""RabbitMQ queues as consumers on the lag pages, sampled from the management API with
history and status, and the topology contract in their config."""
from urllib.parse import quote

import pytest

from collector.deadletters import capture
from collector.lag import service as lag
from collector.models import Consumer, Event, LagSample, LagSettings
from tests.brokers.rabbit import api, declare, publish, rabbit_broker
from tests.conftest import run_async, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_queue_s_lag_has_history_status_topics_and_its_page(vhost, run_collector, viewer_client):
    """Ready + unacked per queue, a sample per round; bindings resolved to the topic names
    the tap stores; a queue bound to a fanout with one consumer of another service is broadcast."""
    from collector.ingest.configuration import load_configuration

    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    run_async(declare(vhost, [("shop", "topic"), ("news", "fanout")],
                      [("billing", "shop", "order.*", None), ("alerts", "news", "", None)]))
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker], installs=[capture.install, lag.install])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    run_async(publish(vhost, [("shop", "order.created", b"{}", None, None)] * 3
                      + [("shop", "order.paid", b"{}", None, None)] * 2 + [("news", "", b"hi", None, None)]))
    queue = Consumer.objects.filter(broker=broker, name="billing")
    wait_until(lambda: queue.filter(lag=5).exists(), 40, "billing's lag of five")
    billing = queue.get()
    assert billing.kind == "rabbitmq" and billing.stream == vhost.rsplit("/", 1)[1]
    assert billing.pending == 5 and billing.ack_pending == 0
    assert billing.config["instances"] == 0 and billing.config["routing"] == "load-balanced"
    assert {"exchange": "shop", "routing_key": "order.*", "arguments": {}} in billing.config["bindings"]
    wait_until(lambda: set(Consumer.objects.get(pk=billing.pk).config["topics"]) == {"order.created", "order.paid"},
               20, "billing's topics resolved from what the tap stored")
    wait_until(lambda: LagSample.objects.filter(consumer_id=billing.pk).count() >= 2, 20, "a history of samples")
    alerts = Consumer.objects.get(broker=broker, name="alerts")
    assert alerts.config["topics"] == ["news"] and alerts.lag == 1
    assert not Consumer.objects.filter(broker=broker, name__endswith=".tap", observer=False).exists()
    page = viewer_client.get(f"/consumers/{quote(billing.stream, safe='')}/billing/?broker={broker.name}")
    assert page.status_code == 200 and b"billing" in page.content
    listing = viewer_client.get("/consumers/")
    assert b"billing" in listing.content
    # A deleted queue is shown as gone, not frozen.
    api("DELETE", f"/api/queues/{billing.stream}/billing")
    wait_until(lambda: Consumer.objects.get(pk=billing.pk).status == "gone", 20, "billing marked gone")


def test_the_default_vhost_s_queues_have_a_page_at_percent_2f(viewer_client):
    """vhost `/` is written %2F in the URL (it arrives decoded as a slash)."""
    from django.utils import timezone

    broker = rabbit_broker("amqp://guest:guest@127.0.0.1:5672/")
    now = timezone.now()
    Consumer.objects.create(broker=broker, stream="/", name="mailer", kind="rabbitmq", first_seen=now, last_seen=now)
    page = viewer_client.get(f"/consumers/%2F/mailer/?broker={broker.name}")
    assert page.status_code == 200 and b"mailer" in page.content


def test_without_the_management_api_known_queues_and_configured_exchanges_are_used_and_it_says_so(
        vhost, run_collector, settings):
    """The plugin went away: the queues sampled before are read by a passive declare, and the
    tap binds the exchanges the admin lists."""
    from django.utils import timezone

    from collector.ingest.configuration import load_configuration
    from tests.brokers.rabbit import free_port

    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    run_async(declare(vhost, [("shop", "topic")], queues=[("billing", None, None, None)]))
    settings.RABBITMQ_URL, settings.RABBITMQ_MANAGEMENT_URL = vhost, f"http://127.0.0.1:{free_port()}"
    broker = rabbit_broker(vhost)
    broker.exchanges = "shop topic\nodd x-delayed-message"
    broker.save()
    now = timezone.now()
    Consumer.objects.create(broker=broker, stream=vhost.rsplit("/", 1)[1], name="billing", kind="rabbitmq",
                            first_seen=now, last_seen=now, config={"topics": ["order.created"]})
    running = run_collector(brokers=[load_configuration()[0], broker], installs=[lag.install])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    run_async(publish(vhost, [("", "billing", b"{}", None, None)] * 3))
    billing = Consumer.objects.filter(broker=broker, name="billing")
    wait_until(lambda: billing.filter(lag=3).exists(), 30, "billing's ready count from AMQP")
    config = billing.get().config
    assert config["source"] == "amqp" and "no unacknowledged count" in config["note"]
    assert config["topics"] == ["order.created"]
    run_async(publish(vhost, [("shop", "order.created", b"{}", None, None)]))
    wait_until(lambda: Event.objects.filter(broker=broker, stream="shop").exists(), 20, "the configured exchange tapped")
