"""The forwarder in a running collector: committed events reach the channel layer group
in batches with their stored ids and a cursor, never one message per event; with the
channel layer down, ingestion goes on and the lost batch shows as a gap."""
import asyncio
import logging

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from collector.live import forwarder as live
from collector.live.protocol import LIVE_GROUP, OVERLAP, for_browser
from collector.models import Event
from runner.servers import free_port
from tests.conftest import RunningCollector, nats_publish, run_async, wait_until
from tests.live.conftest import unique_prefix

pytestmark = pytest.mark.django_db(transaction=True)


async def receive_batches(enough, timeout=20):
    """Join the live group as a web process does and collect batches until
    `enough(events received)` holds."""
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL])
    channel = await layer.new_channel()
    await layer.group_add(LIVE_GROUP, channel)
    batches = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            events = [for_browser(e) for b in batches for e in b["events"]]
            if enough(events):
                return batches
            if loop.time() > deadline:
                raise AssertionError(f"not enough after {timeout} s: {len(events)} events")
            try:
                batches.append(await asyncio.wait_for(layer.receive(channel), 1))
            except asyncio.TimeoutError:
                pass
    finally:
        await layer.group_discard(LIVE_GROUP, channel)
        await layer.close_pools()


def test_committed_events_reach_the_live_group_in_a_few_batches_with_their_ids_and_a_cursor(live_collector, nats_url):
    prefix = unique_prefix()
    count = 400

    async def go():
        receiving = asyncio.ensure_future(receive_batches(
            lambda events: len([e for e in events if e["subject"].startswith(prefix)]) >= count))
        await asyncio.sleep(0.5)  # joined the group before the traffic starts
        await asyncio.get_running_loop().run_in_executor(None, lambda: nats_publish(
            nats_url, [(f"{prefix}.orders.created", b'{"n": %d}' % n, None) for n in range(count)]))
        return await receiving

    batches = run_async(go())
    ours = [b for b in batches if b["source"] == live_collector.collector.live.source]
    events = [e for b in ours for e in map(for_browser, b["events"]) if e["subject"].startswith(prefix)]
    stored = dict(Event.objects.filter(subject__startswith=prefix).values_list("id", "received_at"))
    assert sorted(e["id"] for e in events) == sorted(stored), "every committed event once, with its stored id"
    assert len([b for b in ours if b["events"]]) <= count // 20, "batched, never one message per event"
    seqs = [b["seq"] for b in ours]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "batch numbers without a gap"
    for before, after in zip(ours, ours[1:]):
        assert after["since"] == before["rx"] and after["rx"] >= before["rx"], "each batch starts where the last ended"
    last = ours[-1]
    assert last["rx"] == max(e["rx"] for e in events)
    assert last["floor"] < min(stored), "the floor is below every event received after rx - overlap"
    assert all(e["committed"] for e in events)
    assert {e["preview"] for e in events} == {'{"n":%d}' % n for n in range(count)}


def test_with_the_channel_layer_down_ingestion_goes_on_and_the_lost_batch_leaves_a_gap(
        transactional_db, nats_url, caplog):
    prefix = unique_prefix()
    down = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port(27000)}/0"])  # nothing listens there
    running = RunningCollector(installs=[lambda collector: live.install(collector, layer=down)])
    forwarder = running.collector.live
    try:
        with caplog.at_level(logging.WARNING, logger="eventscope.live"):
            nats_publish(nats_url, [(f"{prefix}.a", b"x", None) for _ in range(50)])
            wait_until(lambda: Event.objects.filter(subject__startswith=prefix).count() == 50, 15,
                       "the events stored while the channel layer is down")
            wait_until(lambda: forwarder.counters["dropped_events"] >= 50, 10, "the forwarder to give up the batch")
        assert forwarder.interrupted
        assert any("live tail interrupted" in r.getMessage() for r in caplog.records)
        spent = forwarder.seq

        # The layer is back: the next batch carries a number that shows the gap.
        forwarder.layer = RedisChannelLayer(hosts=[settings.REDIS_URL])
        nats_publish(nats_url, [(f"{prefix}.b", b"y", None)])
        batches = run_async(receive_batches(lambda events: any(e["subject"] == f"{prefix}.b" for e in events)))
        later = [b for b in batches if b["source"] == forwarder.source]
        assert later[0]["seq"] > spent >= 1 and forwarder.interrupted is None
        assert later[-1]["rx"] - OVERLAP < max(
            int(e.timestamp() * 1_000_000) for e in Event.objects.filter(subject=f"{prefix}.a")
            .values_list("received_at", flat=True)), "the cursor still reaches back over the lost events"
    finally:
        running.stop()
