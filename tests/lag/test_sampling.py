"""The lag sampler against a real JetStream and PostgreSQL: growth and drain, consumers that
disappear, purged streams, filtered consumers."""
import time

import pytest

from collector.models import Consumer, ConsumerEvent, LagCrossing
from tests.conftest import wait_until
from tests.lag.conftest import (
    Puller,
    add_pull_consumer,
    consumer_row,
    js,
    make_stream,
    publish,
    samples,
    unique,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_consumer_that_stops_acking_grows_then_drains_to_zero_with_a_finite_estimate(lag_collector, nats_url):
    """While its service pulls nothing, the lag and the oldest message's age rise and the
    consumer is marked growing; once it pulls again the lag falls with a finite drain estimate
    on the way, and ends at zero."""
    stream = unique("LAGG")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "worker", f"{stream.lower()}.orders")
    first = publish(nats_url, f"{stream.lower()}.orders", 5)[0]
    for _ in range(6):  # the service is down: orders keep coming
        publish(nats_url, f"{stream.lower()}.orders", 10)
        time.sleep(0.6)
    consumer = consumer_row(stream, "worker")
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).growing, 15, "the lag marked growing")
    grown = samples(consumer)
    assert [s.lag for s in grown if s.lag is not None] == sorted(s.lag for s in grown if s.lag is not None)
    ages = [s.oldest_age for s in grown if s.lag]
    assert ages[-1] > ages[0] >= 0  # rising, never negative (the first sample may be taken as the first message lands)
    stored_first = js(nats_url, lambda j, nc: j.get_msg(stream, first.seq))
    assert {s.oldest_source for s in grown if s.lag} <= {"store", "stream"}
    assert all(abs((s.oldest_ts - _time(stored_first)).total_seconds()) < 0.001 for s in grown if s.lag)

    puller = Puller(nats_url, stream, "worker", f"{stream.lower()}.orders", batch=4, every=0.3)
    try:
        wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 0, 40, "the lag drained")
    finally:
        puller.close()
    drained = [s for s in samples(consumer) if s.at > grown[-1].at]
    on_the_way = [s for s in drained if s.lag and s.drain_seconds is not None]
    assert on_the_way, [(s.lag, s.drain_seconds) for s in drained]
    assert all(0 < s.drain_seconds < 3600 and not s.growing for s in on_the_way)
    assert drained[-1].lag == 0 and drained[-1].oldest_ts is None and drained[-1].drain_seconds == 0
    assert all(s.lag >= 0 for s in samples(consumer) if s.lag is not None)


def _time(message):
    from collector.lag.reading import parse_time

    return parse_time(message.time) if isinstance(message.time, str) else message.time


def test_a_deleted_consumer_is_marked_gone_from_that_moment_never_negative_nor_frozen(lag_collector, nats_url):
    """Its last sample says gone with no figures, the list row loses its figures, and the
    crossing to gone is recorded."""
    stream = unique("LAGD")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "billing")
    publish(nats_url, f"{stream.lower()}.orders", 7)
    consumer = consumer_row(stream, "billing")
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 7, 10, "the lag of 7 sampled")
    js(nats_url, lambda j, nc: j.delete_consumer(stream, "billing"))
    gone = wait_until(lambda: Consumer.objects.filter(pk=consumer.pk, status="gone").first(), 10, "marked gone")
    assert gone.gone_at is not None and gone.lag is None and gone.pending is None and gone.oldest_age is None
    last = samples(consumer)[-1]
    assert last.state == "gone" and last.pending is None and "no longer exists" in last.note
    assert LagCrossing.objects.filter(consumer=consumer, status_to="gone").count() == 1
    time.sleep(2.5)  # later rounds add nothing for it, and nothing negative ever
    assert samples(consumer)[-1].at == last.at
    assert all(s.lag is None or s.lag >= 0 for s in samples(consumer))


def test_a_purged_stream_never_gives_negative_lag_and_shows_the_purge_on_the_timeline(lag_collector, nats_url):
    stream = unique("LAGP")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "reports")
    publish(nats_url, f"{stream.lower()}.daily", 30)
    consumer = consumer_row(stream, "reports")
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 30, 10, "the lag of 30 sampled")
    js(nats_url, lambda j, nc: j.purge_stream(stream))
    event = wait_until(lambda: ConsumerEvent.objects.filter(consumer=consumer, kind="purge").first(), 10, "the purge")
    assert "30 messages removed" in event.detail
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 0, 10, "no lag after the purge")
    publish(nats_url, f"{stream.lower()}.daily", 3)
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 3, 10, "new messages counted from zero")
    lags = [s.lag for s in samples(consumer)]
    assert None not in lags and min(lags) >= 0
    assert Consumer.objects.get(pk=consumer.pk).oldest_age < 60


def test_a_filtered_consumer_s_oldest_age_is_that_of_its_own_subject(lag_collector, nats_url):
    """Stream sequences count other subjects too: the older message on another subject of the
    stream is not this consumer's oldest."""
    stream = unique("LAGF")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "shipping", f"{stream.lower()}.paid")
    add_pull_consumer(nats_url, stream, "audit", f"{stream.lower()}.created")
    created = publish(nats_url, f"{stream.lower()}.created", 3)
    time.sleep(2)
    paid = publish(nats_url, f"{stream.lower()}.paid", 2)
    shipping = consumer_row(stream, "shipping")
    audit = consumer_row(stream, "audit")
    wait_until(lambda: Consumer.objects.get(pk=shipping.pk).lag == 2, 10, "shipping's lag")
    wait_until(lambda: Consumer.objects.get(pk=audit.pk).lag == 3, 10, "audit's lag")
    time.sleep(1.2)
    paid_time = _time(js(nats_url, lambda j, nc: j.get_msg(stream, paid[0].seq)))
    created_time = _time(js(nats_url, lambda j, nc: j.get_msg(stream, created[0].seq)))
    last_shipping = [s for s in samples(shipping) if s.lag][-1]
    last_audit = [s for s in samples(audit) if s.lag][-1]
    assert last_shipping.oldest_ts == paid_time
    assert last_audit.oldest_ts == created_time
    assert last_audit.oldest_age - last_shipping.oldest_age > 1.5


def test_two_collectors_never_sample_at_once_and_the_second_takes_over_when_the_first_stops(fast_sampling, nats_url):
    from collector.lag import service as lag
    from collector.models import LagRound
    from tests.conftest import RunningCollector

    first = RunningCollector(installs=[lag.install], name="collector-one")
    second = RunningCollector(installs=[lag.install], name="collector-two")
    try:
        time.sleep(4)
        rounds = list(LagRound.objects.order_by("started"))
        assert len(rounds) >= 3
        holder = rounds[0].collector
        assert {r.collector for r in rounds} == {holder}
        assert all(a.finished <= b.started for a, b in zip(rounds, rounds[1:]))
        (first if holder == "collector-one" else second).stop()
        other = "collector-two" if holder == "collector-one" else "collector-one"
        wait_until(lambda: LagRound.objects.filter(collector=other).exists(), 10, "the other collector taking over")
        rounds = list(LagRound.objects.order_by("started"))
        assert all(a.finished <= b.started for a, b in zip(rounds, rounds[1:]))
    finally:
        for running in (first, second):
            if running.thread.is_alive():
                running.stop()


def test_minutes_of_samples_roll_up_once_into_minute_and_hour_rollups(lag_collector, nats_url):
    """The rollups hold what the raw samples of each whole minute say; rolling again adds nothing."""
    from datetime import timedelta

    from collector.db import conninfo
    from collector.lag.writer import roll_up
    from collector.models import LagRollup, LagRollupHour
    from tests.conftest import run_async

    stream = unique("LAGR")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "ledger")
    publish(nats_url, f"{stream.lower()}.x", 4)
    consumer = consumer_row(stream, "ledger")
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 4, 10, "lag 4")
    publish(nats_url, f"{stream.lower()}.x", 3)
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 7, 10, "lag 7")
    lag_collector.stop()
    raw = samples(consumer)
    first = raw[0].at.replace(second=0, microsecond=0)

    async def roll():
        import psycopg

        async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
            await roll_up(conn, raw[-1].at + timedelta(minutes=1), since=first)
            await roll_up(conn, raw[-1].at + timedelta(minutes=1), since=first)

    LagRollup.objects.filter(consumer=consumer).delete()
    LagRollupHour.objects.filter(consumer=consumer).delete()
    run_async(roll())
    minutes = list(LagRollup.objects.filter(consumer=consumer).order_by("minute"))
    assert sum(m.samples for m in minutes) == len(raw)
    assert max(m.lag_max for m in minutes) == 7 and minutes[-1].lag_last == 7
    assert sum(m.lag_sum for m in minutes) == sum(s.lag for s in raw)
    hours = list(LagRollupHour.objects.filter(consumer=consumer))
    assert sum(h.samples for h in hours) == len(raw) and max(h.lag_max for h in hours) == 7
