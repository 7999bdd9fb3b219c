"""The live socket end to end: a real web process (daphne), a real collector forwarding
through Redis, a websocket client with a logged-in session."""
import asyncio
import time

import aiohttp
import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from collector.live import forwarder as live
from collector.models import Event, RuntimeSettings
from tests.conftest import RunningCollector, nats_publish, run_async
from tests.live.conftest import Daphne, TailClient, unique_prefix

pytestmark = pytest.mark.django_db(transaction=True)


def publish(nats_url, subjects, body=b'{"n": 1}'):
    nats_publish(nats_url, [(subject, body, None) for subject in subjects])


def test_an_anonymous_websocket_is_refused(web):
    async def connect():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(web.ws_url, headers={"Origin": web.url})
            return refused.value.status

    assert run_async(connect()) == 403


def test_a_subscriber_gets_the_events_matching_its_filter_and_never_the_others(web, live_collector, charlie_cookie,
                                                                             nats_url):
    prefix = unique_prefix()

    async def go():
        async with TailClient(web, charlie_cookie) as client:
            await client.subscribe({"subject": f"{prefix}.orders.*", "service": ""})
            await client.read_until(lambda c: any(m["type"] == "subscribed" for m in c.other))
            await asyncio.get_running_loop().run_in_executor(None, publish, nats_url, [
                f"{prefix}.orders.created", f"{prefix}.payments.captured", f"{prefix}.orders.eu.created",
                f"{prefix}.orders.paid", f"{prefix}.orderss.created"])
            await client.read_until(lambda c: len(c.events) >= 2)
            seen = len(client.stats)
            await client.read_until(lambda c: len(c.stats) >= seen + 2)  # two more seconds: nothing else comes
            return client

    client = run_async(go())
    assert sorted(e["subject"] for e in client.events) == [f"{prefix}.orders.created", f"{prefix}.orders.paid"]
    stored = dict(Event.objects.filter(subject__startswith=f"{prefix}.orders.").values_list("subject", "id"))
    assert {e["id"] for e in client.events} == {stored[f"{prefix}.orders.created"], stored[f"{prefix}.orders.paid"]}
    assert not client.backfilled


def test_a_bad_filter_gets_a_reason_and_no_events(web, charlie_cookie):
    async def go():
        async with TailClient(web, charlie_cookie) as client:
            await client.subscribe({"subject": "orders.>.eu"})
            await client.read_until(lambda c: c.other)
            return client.other[0]

    assert run_async(go()) == {"type": "error", "reason": "subject 'orders.>.eu': > must be the last token"}


def test_above_the_rate_cap_the_client_gets_a_sample_and_exact_counts(web, live_collector, charlie_cookie, nats_url):
    RuntimeSettings.objects.update_or_create(pk=1, defaults={"live_rate_cap": 20})
    prefix = unique_prefix()

    async def go():
        async with TailClient(web, charlie_cookie) as client:
            await client.subscribe({"subject": f"{prefix}.>"})
            await client.read_until(lambda c: any(m["type"] == "subscribed" for m in c.other))
            started = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, publish, nats_url,
                                                             [f"{prefix}.burst"] * 600)
            await client.read_until(lambda c: sum(s["matching"] for s in c.stats) >= 600, timeout=30)
            return client, time.monotonic() - started

    client, seconds = run_async(go())
    matching = sum(s["matching"] for s in client.stats)
    skipped = sum(s["skipped"] for s in client.stats)
    assert matching == 600 and len(client.events) + skipped == 600, "every matching event shown or counted"
    assert 0 < len(client.events) <= 20 * seconds + 20, "no more than the cap (plus one second's burst)"
    assert client.stats[-1]["rate_cap"] == 20


def test_a_client_that_grants_no_more_credit_is_sent_no_more_events(web, live_collector, charlie_cookie, nats_url):
    prefix = unique_prefix()

    async def go():
        async with TailClient(web, charlie_cookie) as client:
            await client.subscribe({"subject": f"{prefix}.>"}, credit=10)
            await client.read_until(lambda c: any(m["type"] == "subscribed" for m in c.other))
            await asyncio.get_running_loop().run_in_executor(None, publish, nats_url, [f"{prefix}.slow"] * 100)
            await client.read_until(lambda c: sum(s["matching"] for s in c.stats) >= 100, grant=False)
            return client

    client = run_async(go())
    assert len(client.events) == 10
    assert sum(s["skipped"] for s in client.stats) == 90 and client.stats[-1]["credit"] == 0


def test_a_reconnecting_client_gets_what_it_missed_from_the_store_marked_and_nothing_twice(
        web, live_collector, charlie_cookie, nats_url):
    prefix = unique_prefix()

    async def go():
        async with TailClient(web, charlie_cookie) as first:
            await first.subscribe({"subject": f"{prefix}.>"})
            await first.read_until(lambda c: any(m["type"] == "subscribed" for m in c.other))
            await asyncio.get_running_loop().run_in_executor(None, publish, nats_url, [f"{prefix}.before"] * 3)
            await first.read_until(lambda c: len(c.events) == 3 and c.stats and c.stats[-1]["cursor"])
            cursor, have = first.stats[-1]["cursor"], [e["id"] for e in first.events]
        await asyncio.get_running_loop().run_in_executor(None, publish, nats_url, [f"{prefix}.while.away"] * 4)
        await asyncio.sleep(1)  # stored and forwarded to nobody
        async with TailClient(web, charlie_cookie) as second:
            await second.subscribe({"subject": f"{prefix}.>"}, since=cursor, have=have)
            await second.read_until(lambda c: len(c.backfilled) >= 4)
            await asyncio.get_running_loop().run_in_executor(None, publish, nats_url, [f"{prefix}.after"])
            await second.read_until(lambda c: len(c.events) >= 1)
            return have, second

    have, second = run_async(go())
    away = set(Event.objects.filter(subject=f"{prefix}.while.away").values_list("id", flat=True))
    assert {e["id"] for e in second.backfilled} == away, "exactly the missed ones, none the page already had"
    assert not set(have) & {e["id"] for e in second.backfilled + second.events}
    assert [e["subject"] for e in second.events] == [f"{prefix}.after"]


@pytest.mark.slow
def test_batches_the_channel_layer_drops_for_a_slow_web_process_are_backfilled_from_the_store(
        transactional_db, charlie_cookie, nats_url):
    """channels_redis drops messages for a process over its capacity without a word (the
    sender checks it: here the collector's layer holds 2); the next batch's number shows
    the gap and the socket backfills it."""
    small = RedisChannelLayer(hosts=[settings.REDIS_URL], capacity=2)
    running = RunningCollector(installs=[lambda collector: live.install(collector, layer=small)])
    web = Daphne(env={"EVENTSCOPE_CHANNEL_CAPACITY": "2"}).start()
    prefix = unique_prefix()
    try:
        async def go():
            async with TailClient(web, charlie_cookie) as client:
                await client.subscribe({"subject": f"{prefix}.>"})
                await client.read_until(lambda c: any(m["type"] == "subscribed" for m in c.other))
                web.freeze()
                loop = asyncio.get_running_loop()
                for n in range(15):  # ~15 forwarded batches while the web process is stuck
                    await loop.run_in_executor(None, publish, nats_url, [f"{prefix}.n{n}"] * 4)
                    await asyncio.sleep(0.2)
                web.thaw()
                total = 60
                await client.read_until(lambda c: len({e["id"] for e in c.events + c.backfilled}) >= total, timeout=30)
                return client

        client = run_async(go())
    finally:
        web.stop()
        running.stop()
    live_ids = [e["id"] for e in client.events]
    back_ids = [e["id"] for e in client.backfilled]
    stored = set(Event.objects.filter(subject__startswith=prefix).values_list("id", flat=True))
    assert back_ids, "some batches were dropped and backfilled"
    assert sorted(live_ids + back_ids) == sorted(stored), "every event exactly once"


def test_summaries_keep_a_page_s_counters_current_without_reloading(web, live_collector, charlie_cookie, nats_url):
    prefix = unique_prefix()

    async def go():
        async with TailClient(web, charlie_cookie) as client:
            await client.send({"type": "summaries", "kinds": {"overview": {"seconds": 900}, "deadletters": {},
                                                              "nonsense": {}}})
            await client.read_until(lambda c: {"overview", "deadletters"} <= {m.get("kind") for m in c.other})
            before = next(m for m in client.other if m.get("kind") == "overview")["data"]["events"]
            await asyncio.get_running_loop().run_in_executor(None, publish, nats_url, [f"{prefix}.counted"] * 5)
            await client.read_until(lambda c: any(m.get("kind") == "overview" and m["data"]["events"] >= before + 5
                                                  for m in c.other))
            return client

    client = run_async(go())
    errors = [m for m in client.other if m["type"] == "error"]
    assert errors and "no live summary called 'nonsense'" in errors[0]["reason"]
    dead = next(m for m in client.other if m.get("kind") == "deadletters")["data"]
    assert dead == {"new": 0, "latest": None}


@pytest.mark.slow
def test_an_idle_socket_stays_open_past_the_channel_layer_s_blocking_read(web, charlie_cookie):
    """A page that only shows summaries gets nothing from the channel layer, whose reads
    block 5 s at a time; a read timeout as short as that (redis-py 8's default) closed
    such sockets every five seconds."""
    async def go():
        async with TailClient(web, charlie_cookie) as client:
            await client.send({"type": "summaries", "kinds": {"deadletters": {}}})
            await client.read_until(lambda c: any(m.get("kind") == "deadletters" for m in c.other))
            await asyncio.sleep(8)
            await client.subscribe({"subject": "idle.>"})
            await client.read_until(lambda c: any(m["type"] == "subscribed" for m in c.other))
            return client

    assert run_async(go()).other[-1]["filters"]["subject"] == "idle.>"
