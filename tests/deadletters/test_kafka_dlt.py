"""Kafka dead-letter topics against a real Kafka-protocol broker (Tansu): a Spring Kafka style
`<topic>.DLT` record becomes a dead letter naming its original topic, position, consumer and
error; a retry goes back to the original topic with the original key (so the same partition)
and provenance, exactly once through the database claim; an attempt whose worker died is
looked for in what the tap stored, and never sent blind."""
import struct
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from collector.brokers import kafka
from collector.deadletters import capture
from collector.deadletters.kafka import KafkaDltRules
from collector.ingest.configuration import load_configuration
from collector.lag import service as lag
from collector.models import Broker, DeadLetter, Event, LagSettings, RetryAttempt
from dashboard.deadletters import tasks as tasks_dlq
from tests.conftest import (
    RunningCollector,
    kafka_produce,
    kafka_topics,
    run_async,
    wait_until,
)
from tests.lag.test_kafka_lag import KafkaApp

pytestmark = pytest.mark.django_db(transaction=True)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def records_of(bootstrap, topic, partitions):
    """Every record of `topic`, read from the start without a group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            found, idle = [], 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=300)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    found.extend(records)
            return found
        finally:
            await consumer.stop()

    return run_async(go())


@pytest.fixture
def kafka_collector(transactional_db, kafka_bootstrap, settings):
    settings.EVENTSCOPE_CONSUMER = unique("eventscope")
    nats_broker = load_configuration()[0]
    broker = Broker.objects.create(name=unique("kafka"), kind="kafka", url=f"kafka://{kafka_bootstrap}")
    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    running = RunningCollector(installs=[capture.install, lag.install], brokers=[nats_broker, broker])
    yield broker
    running.stop()


def test_a_dlt_record_is_retried_once_to_its_partition_with_its_key_and_an_unsure_attempt_is_looked_for(
        kafka_collector, kafka_bootstrap, operator_client, eager_tasks):
    orders, group = unique("orders"), unique("shipping")
    kafka_topics(kafka_bootstrap, {orders: 3, f"{orders}.DLT": 3})
    value = b'{"order": 7}'
    [original] = kafka_produce(kafka_bootstrap, [(orders, b"customer-7", value, [("X-Customer", b"7")])])
    # What Spring Kafka's DeadLetterPublishingRecoverer sends when the consumer gives up.
    kafka_produce(kafka_bootstrap, [(f"{orders}.DLT", b"customer-7", value, [
        ("X-Customer", b"7"),
        ("kafka_dlt-original-topic", orders.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", original.partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", original.offset)),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", b"org.springframework.kafka.listener.ListenerExecutionFailedException"),
        ("kafka_dlt-exception-message", b"no stock for order 7"),
    ])])
    letter = wait_until(lambda: DeadLetter.objects.filter(dlq_subject=f"{orders}.DLT").first(), 30, "the dead letter")
    assert (letter.subject, letter.stream, letter.consumer, letter.message_key) == (orders, orders, group, "customer-7")
    assert letter.stream_seq == kafka.position(original.partition, original.offset)
    assert letter.error == "org.springframework.kafka.listener.ListenerExecutionFailedException: no stock for order 7"
    assert Event.objects.get(id=letter.event_id).subject == f"{orders}.DLT"

    # A double click: two posts of the same form, one message.
    for _ in range(2):
        operator_client.post(f"/dlq/{letter.id}/retry/", {"attempt": "0"})
    letter.refresh_from_db()
    assert (letter.status, letter.attempt) == ("retried", 1)
    retries = [r for r in records_of(kafka_bootstrap, orders, 3) if r.offset != original.offset
               or r.partition != original.partition]
    assert len(retries) == 1
    [retry] = retries
    assert (retry.partition, retry.key, retry.value) == (original.partition, b"customer-7", value)
    headers = dict(retry.headers)
    assert headers["X-Customer"] == b"7" and headers["Eventscope-Retry-Of"] == str(letter.id).encode()
    assert headers["Eventscope-Attempt"] == b"1" and not any(k.startswith("kafka_dlt-") for k in headers)
    attempt = RetryAttempt.objects.get(dead_letter=letter, attempt=1)
    assert (attempt.outcome, attempt.stream, attempt.stream_seq) == (
        "sent", orders, kafka.position(retry.partition, retry.offset))

    # The group that gave up takes the retry: once the sampler sees it committed past it,
    # the retry is followed up as consumed.
    app = KafkaApp(kafka_bootstrap, group, orders)
    try:
        assert RetryAttempt.objects.get(pk=attempt.pk).followup == "pending"
        app.commit({retry.partition: retry.offset + 1})
        wait_until(lambda: RetryAttempt.objects.get(pk=attempt.pk).followup == "consumed", 30, "the retry consumed")
    finally:
        app.stop()

    # A worker that died after sending attempt 1 (its lock is gone): the rerun finds it in
    # what the tap stored and sends nothing.
    wait_until(lambda: Event.objects.filter(subject=orders, headers__contains={"Eventscope-Attempt": "1"}).exists(),
               30, "the tap to store the retry")
    now = timezone.now()
    DeadLetter.objects.filter(pk=letter.pk).update(status="retrying")
    RetryAttempt.objects.filter(pk=attempt.pk).update(outcome="sending", sender=424242,
                                                      first_sent_at=now - timedelta(seconds=5), sent_at=now)
    assert tasks_dlq.send_attempts([attempt.pk], "bob") == {"found": 1}

    # A worker that died around sending attempt 2, of which the tap stored nothing: the
    # outcome is unknown, and nothing is sent blind.
    DeadLetter.objects.filter(pk=letter.pk).update(status="new")
    from collector.deadletters import claims

    second = claims.claim(letter.id, 1, None)
    RetryAttempt.objects.filter(pk=second.pk).update(outcome="sending", sender=424242,
                                                     first_sent_at=now - timedelta(seconds=5), sent_at=now)
    assert tasks_dlq.send_attempts([second.pk], "bob") == {"unknown": 1}
    letter.refresh_from_db()
    assert letter.status == "unknown" and "not sent again" in letter.status_reason
    assert len(records_of(kafka_bootstrap, orders, 3)) == 2


def test_unit_dlt_conventions_name_the_original_topic_and_read_connect_headers():
    """Unit test: topic patterns and Kafka Connect's text headers."""
    from collector.events.writer import EventRow

    rules = KafkaDltRules(["*.DLT", "*-dlq", "dlq.*"])
    assert [rules.original_topic(t) for t in ["shop.orders.DLT", "orders-dlq", "dlq.orders", "orders", ".DLT"]] == [
        "shop.orders", "orders", "orders", None, None]
    row = EventRow(ts=timezone.now(), received_at=timezone.now(), broker_id=1, subject="connect-errors", stream="x",
                   seq=5, headers={"__connect.errors.topic": "payments", "__connect.errors.partition": "2",
                                   "__connect.errors.offset": "41", "__connect.errors.connector.name": "pg-sink",
                                   "__connect.errors.exception.class.name": "org.apache.kafka.connect.errors.DataException",
                                   "__connect.errors.exception.message": "bad schema"},
                   raw=b"{}", size=2, truncated=False, sha256=None, format="raw", key="k1")
    letter = rules.letter_for(row, 9)
    assert (letter.subject, letter.stream_seq, letter.consumer, letter.message_key) == (
        "payments", kafka.position(2, 41), "pg-sink", "k1")
    assert letter.error == "org.apache.kafka.connect.errors.DataException: bad schema"
