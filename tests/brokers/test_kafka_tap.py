"""The Kafka tap against a real Kafka-protocol broker (Tansu): every topic and partition is
stored once with its position, key, headers and time, topics made later are found, and
the collector's group commits only what is stored."""
import json
import time
import uuid

from collector.brokers import kafka
from collector.models import Broker, Event, Topic
from tests.conftest import kafka_produce, kafka_topics, run_async, wait_until


def wall_ms():
    return int(time.time() * 1000)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def kafka_broker(bootstrap):
    return Broker.objects.create(name=unique("kafka"), kind="kafka", url=f"kafka://{bootstrap}")


def start_kafka_collector(run_collector, bootstrap, group, **options):
    running = run_collector(brokers=[kafka_broker(bootstrap)], **options)
    return running


def kafka_delete_topic(bootstrap, topic):
    from aiokafka.admin import AIOKafkaAdminClient

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()

    run_async(go())


def committed(bootstrap, group, topic, partitions):
    """{partition: committed offset} of `group` on `topic`, asked with the standard
    OffsetFetch request for named partitions (what Tansu answers)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.commit import OffsetFetchRequest

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            node = await admin.find_coordinator(group)
            response = await admin._send_request(OffsetFetchRequest(group, [(topic, list(range(partitions)))]), node)
            return {p: offset for _, parts in response.topics for p, offset, _, _ in parts}
        finally:
            await admin.close()

    return run_async(go())


def test_every_topic_and_partition_is_stored_once_with_its_position_key_headers_and_time(
        run_collector, kafka_bootstrap, settings):
    settings.EVENTSCOPE_CONSUMER = group = unique("tap")
    orders, payments = unique("orders"), unique("payments")
    kafka_topics(kafka_bootstrap, {orders: 3, payments: 2})
    records = [(orders, f"customer-{i % 5}".encode(),
                json.dumps({"type": "order.created", "version": "2", "timestamp": "2026-11-30T10:00:00Z",
                            "body": {"n": i}}).encode(),
                [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                 ("binary", bytes([0, 0, 0, i]))], wall_ms() - 60_000 + i) for i in range(30)]
    records += [(payments, None if i % 2 else b"\xff\xfe", b"raw bytes %d" % i, None, wall_ms() - 30_000 + i)
                for i in range(10)]
    sent = kafka_produce(kafka_bootstrap, records)
    running = start_kafka_collector(run_collector, kafka_bootstrap, group)
    wait_until(lambda: Event.objects.filter(stream__in=[orders, payments]).count() == 40, 30, "40 events")

    for (topic, key, value, headers, when), meta in zip(records, sent):
        event = Event.objects.get(stream=topic, seq=kafka.position(meta.partition, meta.offset))
        assert event.subject == topic and bytes(event.raw) == value
        assert round(event.ts.timestamp() * 1000) == when
        assert event.key == kafka.as_text(key)
        assert kafka.as_bytes(event.key) == key
        if headers:
            assert event.headers["traceparent"].startswith("00-0af7")
            assert kafka.as_bytes(event.headers["binary"]) == headers[1][1]
            assert event.trace_id == "0af7651916cd43dd8448eb211c80319c"
            assert event.type == "order.created" and event.payload == {"n": json.loads(value)["body"]["n"]}
    assert {p for p, _ in (kafka.partition_offset(s) for s in Event.objects.filter(stream=orders)
                           .values_list("seq", flat=True))} == {0, 1, 2}
    assert Topic.objects.get(name=orders).stream == orders

    # A deleted topic leaves the tap (a rebalance); a topic made while the collector runs is
    # found at the next metadata refresh.
    kafka_delete_topic(kafka_bootstrap, payments)
    late = unique("late")
    kafka_topics(kafka_bootstrap, {late: 2})
    kafka_produce(kafka_bootstrap, [(late, b"k", b'{"late": true}', None)])
    wait_until(lambda: Event.objects.filter(stream=late).count() == 1, 30, "the late topic's event")

    # Offsets are committed once stored: the group has read every partition to its end.
    ends = {}
    for meta in sent:
        if meta.topic == orders:
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    wait_until(lambda: committed(kafka_bootstrap, group, orders, 3) == ends, 20, "offsets committed to the end")
    running.stop()

    # A new collector in the same group starts where the last one committed: nothing twice.
    kafka_produce(kafka_bootstrap, [(orders, b"customer-1", b"after restart", None)])
    running = start_kafka_collector(run_collector, kafka_bootstrap, group)
    wait_until(lambda: Event.objects.filter(stream=orders).count() == 31, 30, "the message sent while stopped")
    assert Event.objects.filter(stream__in=[orders, payments, late]).count() == 42  # the deleted topic's rows stay
    running.stop()


def test_text_and_bytes_are_stored_reversibly():
    """Unit test: keys and header values are text when printable UTF-8, else base64."""
    for value in [b"plain", "été".encode(), b"\x00\x00\x00\x02", b"\xff", b"base64:looks-like-ours", b""]:
        assert kafka.as_bytes(kafka.as_text(value)) == value
    assert kafka.as_text(b"plain") == "plain"
    assert kafka.as_text(b"\x00\x01").startswith("base64:")
    assert kafka.headers_of([("a", b"1"), ("a", b"2")]) == {"a": "2", "a#1": "1"}
    assert kafka.partition_offset(kafka.position(7, 123456789)) == (7, 123456789)


def test_a_partition_commits_only_up_to_its_first_message_not_yet_stored():
    """Unit test: two writers may store a later batch first; the commit waits for the earlier."""
    ledger = kafka.PartitionLedger()
    for offset in range(10):
        ledger.delivered(offset)
    for offset in range(5, 10):
        ledger.store(offset)
    assert ledger.commit_point() is None
    for offset in range(5):
        ledger.store(offset)
    assert ledger.commit_point() == 10


def test_an_unreachable_cluster_is_retried_until_the_stop_without_an_error():
    """Nothing listens on the port: connect keeps trying with growing waits and gives up
    only when told to stop."""
    import asyncio

    from runner.servers import free_port

    async def go():
        adapter = kafka.KafkaAdapter(f"kafka://127.0.0.1:{free_port()}", None)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        started = time.monotonic()
        connected = await adapter.connect(stop)
        await adapter.close()
        return connected, time.monotonic() - started

    connected, took = run_async(go())
    assert connected is False and 1.4 < took < 10
