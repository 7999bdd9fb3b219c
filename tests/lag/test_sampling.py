"""The lag sampler against a real JetStream and PostgreSQL: growth and drain, consumers that
disappear, purged streams, filtered consumers."""
import time

import pytest

from collector.models import Consumer, ConsumerEvent, LagCrossing, LagSample
from tests.conftest import wait_until
from tests.lag.conftest import Puller, add_pull_consumer, consumer_row, js, make_stream, publish, samples, unique

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
    assert ages[-1] > ages[0] > 0
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
