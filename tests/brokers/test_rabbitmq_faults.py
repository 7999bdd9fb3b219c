"""Faults on RabbitMQ: a broker restart (on a private node) loses nothing, the firehose is
turned on again after it; a deleted queue shows as gone; unreadable headers are kept."""
from datetime import UTC, datetime

import pytest

from collector.models import Event
from tests.brokers.rabbit import api, declare, publish, rabbit_broker
from tests.conftest import run_async, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def batch(start, count):
    return [("orders", "order.created", b'{"n": %d}' % n, None, {"message_id": f"m-{n}", "delivery_mode": 2})
            for n in range(start, start + count)]


def test_a_broker_restart_loses_nothing_and_the_firehose_is_turned_on_again(private_rabbit, run_collector,
                                                                            settings):
    from collector.ingest.configuration import load_configuration

    node = private_rabbit
    settings.RABBITMQ_URL, settings.RABBITMQ_MANAGEMENT_URL = node.url, node.management
    run_async(declare(node.url, [("orders", "topic")], [("billing", "orders", "order.#", None)]))
    broker = rabbit_broker(node.url)
    running = run_collector(brokers=[load_configuration()[0], broker])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    adapter = running.collector.taps.adapter_named(broker.name)
    assert adapter.firehose
    run_async(publish(node.url, batch(0, 300)))
    node.stop()  # with copies still in the tap queue, unacked or not yet delivered
    node.start()
    assert not api("GET", "/api/vhosts/%2F", base=node.management)["tracing"] or adapter.counters["reconnects"]
    wait_until(lambda: adapter.counters["reconnects"] >= 1, 60, "the collector to reconnect")
    wait_until(lambda: api("GET", "/api/vhosts/%2F", base=node.management)["tracing"], 30, "the firehose on again")
    run_async(publish(node.url, batch(300, 300)))
    stored = Event.objects.filter(broker=broker)
    wait_until(lambda: stored.count() >= 600, 60, "all 600 messages stored")
    assert sorted(int(h["amqp-message-id"][2:]) for h in stored.values_list("headers", flat=True)) == list(range(600))
    # The application's queue kept everything as well: the tap took copies.
    wait_until(lambda: api("GET", "/api/queues/%2F/billing", base=node.management).get("messages") == 600, 20,
               "billing's 600 messages")


def test_unreadable_header_values_are_kept_escaped_and_the_tap_goes_on(vhost, run_collector):
    from collector.ingest.configuration import load_configuration

    run_async(declare(vhost, [("orders", "topic")]))
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    odd = {"binary": bytearray(b"\xff\xfe\x00raw"), "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
           "nested": {"list": [1, "two", bytearray(b"\xc3")]}, "big": 2**40}
    run_async(publish(vhost, [("orders", "order.odd", b"\x00\x01not json", odd, {"message_id": "odd-1"}),
                              ("orders", "order.fine", b"{}", None, {"message_id": "fine-1"})]))
    stored = Event.objects.filter(broker=broker)
    wait_until(lambda: stored.count() == 2, 30, "both messages")
    headers = stored.get(subject="order.odd").headers
    assert headers["binary"] == "\\xff\\xfe\ufffdraw" or headers["binary"].startswith("\\xff\\xfe")
    assert headers["when"].startswith("2026-01-02T03:04:05") and headers["big"] == str(2**40)
    assert '"two"' in headers["nested"]


def test_a_deleted_tap_queue_is_declared_again_and_capture_goes_on(vhost, run_collector, monkeypatch):
    from collector.brokers import rabbitmq
    from collector.ingest.configuration import load_configuration

    monkeypatch.setattr(rabbitmq, "DISCOVERY_SECONDS", 0.5)
    run_async(declare(vhost, [("orders", "topic")]))
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    adapter = running.collector.taps.adapter_named(broker.name)
    name = vhost.rsplit("/", 1)[1]
    api("DELETE", f"/api/queues/{name}/eventscope.tap")
    wait_until(lambda: adapter.counters.get("tap_redeclared"), 20, "the tap queue declared again")
    run_async(publish(vhost, [("orders", "order.after", b"{}", None, {"message_id": "after-1"})]))
    wait_until(lambda: Event.objects.filter(broker=broker, subject="order.after").exists(), 20,
               "capture after the deletion")


def test_a_tap_queue_past_its_bound_drops_its_oldest_copies_and_the_collector_reports_it(
        vhost, run_collector, monkeypatch):
    """The collector was away: its tap kept only what its bound holds (a gap in what is
    stored), and the collector reports how full the tap is."""
    import aio_pika

    from collector.brokers import rabbitmq
    from collector.ingest.configuration import load_configuration

    monkeypatch.setattr(rabbitmq, "TAP_MAX_BYTES", 20_000)
    monkeypatch.setattr(rabbitmq, "DISCOVERY_SECONDS", 0.5)

    async def tap_left_behind():
        # As a collector that stopped would leave it: bound to the exchange, nobody reading.
        connection = await aio_pika.connect(vhost)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange("orders", "topic", durable=True)
            tap = await channel.declare_queue("eventscope.tap", durable=True, arguments={
                "x-queue-type": "quorum", "x-max-length-bytes": 20_000, "x-overflow": "drop-head"})
            await tap.bind(exchange, "#")

    run_async(tap_left_behind())
    run_async(publish(vhost, [("orders", "order.created", b"x" * 1000, None, {"message_id": f"m-{n}"})
                              for n in range(60)]))
    name = vhost.rsplit("/", 1)[1]
    wait_until(lambda: (api("GET", f"/api/queues/{name}/eventscope.tap").get("message_bytes") or 0) >= 18_000, 20,
               "the tap at its bound")
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker])
    adapter = running.collector.taps.adapter_named(broker.name)
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    stored = Event.objects.filter(broker=broker)
    wait_until(lambda: stored.count() >= 15, 30, "what the tap kept")
    assert stored.count() < 60 and stored.filter(headers__contains={"amqp-message-id": "m-59"}).exists()
    assert not stored.filter(headers__contains={"amqp-message-id": "m-0"}).exists()  # dropped: the gap
    wait_until(lambda: adapter.counters.get("tap_limit") == 20_000, 10, "the tap's fill reported")
