"""Consumers per version from ack floors: the lag sampler's latest ack floor of each consumer,
compared with where each version sits on its stream. A consumer whose floor never passed the
first v2 message has never processed v2, and that blocks retiring v1."""
from datetime import UTC, datetime, timedelta

import pytest

from collector.models import LagSettings, VersionConsumer
from tests.conftest import RunningCollector, wait_until
from tests.lag.conftest import add_pull_consumer, js
from tests.versions.conftest import publish_envelopes, stored, unique

pytestmark = pytest.mark.slow


@pytest.fixture
def floors_collector(transactional_db, monkeypatch):
    from collector.lag import service as lag
    from collector.versions import linker
    from collector.versions import service as versions

    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    monkeypatch.setattr(linker, "INTERVAL", 0.5)
    running = RunningCollector(installs=[lag.install, versions.install])
    yield running
    running.stop()


def ack(url, stream, durable, count):
    async def work(j, nc):
        sub = await j.pull_subscribe_bind(durable, stream)
        acked = 0
        while acked < count:
            for msg in await sub.fetch(count - acked, timeout=5):
                await msg.ack_sync()
                acked += 1
        return acked

    return js(url, work)


def test_a_consumer_whose_ack_floor_never_passed_v2_blocks_retiring_v1(floors_collector, nats_url, admin_client_):
    stream, subject, type_ = unique("FLOOR"), unique("floor.") + ".booked", unique("shop") + ".ledger.booked"
    publish_envelopes(nats_url, stream, subject, [(type_, 1, {"item": "mug"})])  # makes the stream
    add_pull_consumer(nats_url, stream, "ledger", subject)
    add_pull_consumer(nats_url, stream, "books", subject)
    publish_envelopes(nats_url, stream, subject, [(type_, 1, {"item": "mug"})] * 4)
    after_v1 = datetime.now(UTC)
    publish_envelopes(nats_url, stream, subject, [(type_, 2, {"sku": "mug"})] * 5)
    stored(type_, 10)
    ack(nats_url, stream, "ledger", 5)  # the five v1 messages only
    ack(nats_url, stream, "books", 10)

    def linked():
        return set(VersionConsumer.objects.filter(type=type_, floor_passed__isnull=False)
                   .values_list("consumer", "version"))

    # A round covers every consumer the test run left on the server: give the first ones time.
    wait_until(lambda: linked() == {("ledger", "1"), ("books", "1"), ("books", "2")}, 40, "ack floors linked")
    window = {"from": after_v1.isoformat(), "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    data = admin_client_.get(f"/api/versions/{type_}", window).json()
    v1 = data["versions"][0]
    assert v1["status"] == "blocked"
    assert [(b["kind"], b["name"]) for b in v1["answer"]["blockers"]] == [("consumer", "ledger")]
    cells = {row["name"]: [c and (c["processed"], c["by_floor"]) for c in row["cells"]] for row in data["consumers"]}
    assert cells == {"books": [(True, True), (True, True)], "ledger": [(True, True), None]}
