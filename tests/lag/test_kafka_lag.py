"""Kafka consumer-group lag against a real Kafka-protocol broker (Tansu): end offset minus
committed offset per partition, summed per group and topic, with history, the age of the
first uncommitted record, partition skew, and what the topology reads from it."""
import asyncio
import threading
import uuid

import pytest

from collector.lag import service as lag
from collector.models import Broker, Consumer, LagSample
from tests.conftest import RunningCollector, kafka_produce, kafka_topics, wait_until


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class KafkaApp:
    """A service in its own thread: a member of `group` subscribed to `topic`, which reads
    and commits when told, and stays in the group meanwhile."""

    def __init__(self, bootstrap, group, topic):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.consumer = self.call(self._start())

    def call(self, coroutine, timeout=30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _start(self):
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        return consumer

    def commit(self, offsets):
        """Commit {partition: offset}."""
        from aiokafka import TopicPartition

        async def go():
            while not self.consumer.assignment():
                await self.consumer.getmany(timeout_ms=200)
            await self.consumer.commit({TopicPartition(self.topic, p): o for p, o in offsets.items()})

        self.call(go())

    def stop(self):
        self.call(self.consumer.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def kafka_lag_collector(fast_sampling, kafka_bootstrap, settings):
    settings.EVENTSCOPE_CONSUMER = unique("eventscope")
    broker = Broker.objects.create(name=unique("kafka"), kind="kafka", url=f"kafka://{kafka_bootstrap}")
    running = RunningCollector(installs=[lag.install], brokers=[broker])
    yield running
    running.stop()


def latest(topic, group):
    return Consumer.objects.filter(stream=topic, name=group, kind="kafka", sampled_at__isnull=False).first()


def test_a_groups_lag_per_partition_has_history_oldest_age_skew_and_topology_fields(
        kafka_lag_collector, kafka_bootstrap):
    topic, group = unique("invoices"), unique("billing")
    kafka_topics(kafka_bootstrap, {topic: 3})
    # One hot key: most records land in one partition.
    sent = kafka_produce(kafka_bootstrap, [(topic, b"hot" if i % 5 else f"k{i}".encode(), b"{}", None)
                                          for i in range(40)])
    ends = {}
    for meta in sent:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    app = KafkaApp(kafka_bootstrap, group, topic)
    try:
        done = {p: min(2, end) for p, end in ends.items()}  # two records of each partition processed
        app.commit(done)
        expected = sum(ends[p] - done[p] for p in ends)
        consumer = wait_until(lambda: (c := latest(topic, group)) and c.lag == expected and c, 40,
                              f"group {group} sampled with lag {expected}")
        assert consumer.observer is False and consumer.ack_pending == 0
        assert consumer.config["topics"] == [topic] and consumer.config["group"] == group
        assert consumer.config["routing"] == "partitioned" and consumer.config["instances"] == 1
        by_partition = {p["partition"]: p for p in consumer.config["partitions"]}
        assert {p: (v["committed"], v["end"], v["lag"]) for p, v in by_partition.items()} == {
            p: (done[p], ends[p], ends[p] - done[p]) for p in ends}
        hot = max(ends, key=lambda p: ends[p] - done[p])
        assert consumer.config["hot_partition"] == hot
        assert consumer.config["hot_share"] == round((ends[hot] - done[hot]) / expected, 3)
        # The oldest unprocessed record is the earliest first-uncommitted one, read from the broker.
        first_waiting = min(m.timestamp for m in sent if m.offset == done[m.partition])
        sample = wait_until(lambda: LagSample.objects.filter(consumer_id=consumer.id, oldest_ts__isnull=False)
                            .order_by("-at").first(), 20, "a sample with the oldest record")
        assert int(sample.oldest_ts.timestamp() * 1000) == first_waiting and sample.oldest_source == "stream"

        # The service catches up: a later sample shows no lag, and the history keeps both.
        app.commit(ends)
        wait_until(lambda: latest(topic, group).lag == 0, 30, "the lag back to zero")
        history = list(LagSample.objects.filter(consumer_id=consumer.id, state="read").order_by("at")
                       .values_list("pending", flat=True))
        assert history[0] == expected and history[-1] == 0
        assert latest(topic, group).oldest_age == 0
    finally:
        app.stop()
    # The collector's own group is listed apart, as an observer.
    own = wait_until(lambda: Consumer.objects.filter(stream=topic, observer=True, kind="kafka").first(), 30,
                     "the collector's own group")
    assert own.config["group"] == own.name
