"""Retention and a stream read from its start: messages older than the event retention are
counted and acked without storing, and a day partition dropped behind the writers' back is
created again when a message inside retention needs it. The collector never loops on
"no partition"."""
import uuid
from datetime import datetime, timedelta, timezone

import nats

from collector.models import CollectorHeartbeat, Event, EventRollup, RuntimeSettings, Topic
from collector.partitions import EVENTS, drop_before, midnight
from tests.conftest import nats_publish, run_async, wait_until


def set_retention(days):
    settings = RuntimeSettings.load()
    settings.event_retention_days = days
    settings.save()


def observer(url, stream):
    async def go():
        nc = await nats.connect(url)
        info = await nc.jsm().consumer_info(stream, "eventscope")
        await nc.close()
        return info.ack_floor.stream_seq, (info.num_pending or 0) + (info.num_ack_pending or 0)

    return run_async(go())


def test_a_stream_backfilled_from_the_start_acks_messages_past_retention_without_storing_them(run_collector, nats_url):
    """Ten days on, with seven days of retention, a stream's messages are past retention: the
    collector reads the stream from its start, counts each message as expired (metric and
    heartbeat row) and acks it, storing no event, rollup or topic for them, and goes on."""
    set_retention(7)
    stream = f"OLD{uuid.uuid4().hex[:6].upper()}"
    subject = f"{stream.lower()}.n"
    nats_publish(nats_url, [(subject, b'{"n": %d}' % n, None) for n in range(300)], stream=stream,
                 subjects=[f"{stream.lower()}.>"])
    ten_days_on = lambda: datetime.now(timezone.utc) + timedelta(days=10)  # noqa: E731
    running = run_collector(clock=ten_days_on)
    wait_until(lambda: observer(nats_url, stream) == (300, 0), 20, "all 300 acked")
    assert running.collector.metrics.snapshot()["expired"] == 300
    assert not Event.objects.filter(stream=stream).exists()
    assert not EventRollup.objects.filter(subject=subject).exists()
    assert not Topic.objects.filter(name=subject).exists()
    running.collector.write_heartbeat()
    assert CollectorHeartbeat.objects.get(name=running.collector.name).counters["expired"] == 300
    # ... and it goes on taking messages.
    nats_publish(nats_url, [(subject, b'{"n": 300}', None)], stream=stream, subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: observer(nats_url, stream) == (301, 0), 10, "the next message acked")
    assert running.thread.is_alive()


def test_a_day_partition_dropped_behind_the_writers_back_is_created_again(run_collector, nats_url):
    """Retention run by another process drops the day partition both writers had created: the
    next messages of that day are stored in the day's new partition, where the old code failed
    with "no partition" on every redelivery and the collector exited."""
    set_retention(7)
    stream = f"DROP{uuid.uuid4().hex[:6].upper()}"
    subject = f"{stream.lower()}.n"
    running = run_collector()
    nats_publish(nats_url, [(subject, b'{"n": %d}' % n, None) for n in range(50)], stream=stream,
                 subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 50, what="the first 50 stored")
    assert any(link.partitions.known for link in running.collector.links)
    tomorrow = midnight(datetime.now(timezone.utc).date() + timedelta(days=1))
    assert drop_before(EVENTS, tomorrow)  # today's partition, as another process's prune drops it
    assert not Event.objects.filter(stream=stream).exists()
    nats_publish(nats_url, [(subject, b'{"n": %d}' % n, None) for n in range(50, 100)], stream=stream,
                 subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 50, 20, "the next 50 stored")
    wait_until(lambda: observer(nats_url, stream) == (100, 0), 10, "all 100 acked")
    assert sorted(Event.objects.filter(stream=stream).values_list("seq", flat=True)) == list(range(51, 101))
    assert running.thread.is_alive() and not running.collector.stop.is_set()
