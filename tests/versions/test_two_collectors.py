"""Two collectors share the bus (one durable observer, so each message is stored once by one of
them): their version counts, shapes and producers add up to the traffic, never overwrite."""
import pytest
from django.db.models import Sum

from collector.models import (
    Event,
    VersionProducer,
    VersionRollup,
    VersionRollupDay,
    VersionShape,
    VersionStream,
)
from tests.conftest import RunningCollector, wait_until
from tests.versions.conftest import publish_envelopes, unique

pytestmark = pytest.mark.slow


def test_two_collectors_add_up_to_the_traffic(transactional_db, nats_url, monkeypatch):
    from collector.versions import linker
    from collector.versions import service as versions

    monkeypatch.setattr(linker, "INTERVAL", 0.3)
    first = RunningCollector(installs=[versions.install], name="collector-one")
    second = RunningCollector(installs=[versions.install], name="collector-two")
    try:
        stream, subject, type_ = unique("TWO"), unique("two.") + ".made", unique("shop") + ".thing.made"
        items = [(type_, 1 + n % 2, {"n": n, **({"extra": True} if n % 3 == 0 else {})}) for n in range(400)]
        publish_envelopes(nats_url, stream, subject, items[:50])  # makes the stream
        # Both subscribed to the stream's observer before the rest: the deliver group spreads what
        # follows over both (a collector still discovering the stream would get none of it).
        for running in (first, second):
            running.wait_until_observing(stream, 20)
        for start in range(50, 400, 50):  # in several publishes, so both collectors get batches
            publish_envelopes(nats_url, stream, subject, items[start:start + 50])
        wait_until(lambda: Event.objects.filter(subject=subject).count() == 400, 30, "400 events stored")
        hours = VersionRollup.objects.filter(type=type_)
        wait_until(lambda: hours.aggregate(n=Sum("count"))["n"] == 400, 20, "400 events counted")
        wait_until(lambda: VersionRollupDay.objects.filter(type=type_).aggregate(n=Sum("count"))["n"] == 400, 20,
                   "the day summed from the hours")
        learnt = [running.collector.versions.stats["rows"] for running in (first, second)]
        assert sum(learnt) == 400 and all(learnt), learnt  # both took part
        assert {v: hours.filter(version=v).aggregate(n=Sum("count"))["n"] for v in ("1", "2")} == {"1": 200, "2": 200}
        shapes = VersionShape.objects.filter(type=type_)
        assert shapes.aggregate(n=Sum("count"))["n"] == 400 and shapes.count() == 4  # (v1, v2) x (with extra, without)
        assert all(s.paths and s.example is not None for s in shapes)
        streams = {s.version: (s.min_seq, s.max_seq, s.count) for s in VersionStream.objects.filter(type=type_)}
        assert streams == {"1": (1, 399, 200), "2": (2, 400, 200)}
        assert VersionProducer.objects.filter(type=type_).count() == 2
    finally:
        first.stop()
        second.stop()
