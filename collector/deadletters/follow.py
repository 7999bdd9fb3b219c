"""Following what became of a retry: a republished message is consumed once the failing
consumer's ack floor passes it, or it comes back as a new dead letter (died again). The
same loop rereads the settings, checks the alert thresholds, applies retention, and
settles retry claims nobody holds any more (see `collector.deadletters.claims`)."""
import asyncio
import logging
from datetime import datetime, timedelta, timezone

import nats
from channels.db import database_sync_to_async
from nats.js.errors import NotFoundError

from collector.brokers.nats import OBSERVER
from collector.deadletters.alerts import check_thresholds
from collector.deadletters.retention import prune
from collector.deadletters.rules import DlqRules
from collector.waits import pause

log = logging.getLogger("eventscope.deadletters")

FOLLOW_SECONDS = 2.0
FOLLOW_GIVE_UP = timedelta(days=1)
SETTINGS_SECONDS = 10.0


async def follow(collector, stop):
    """Extension: decide what became of each republished message. Consumed when every
    consumer that should take it (the one that gave up, or every consumer of the stream
    when that is unknown) has an ack floor at or past it; a death is recorded by capture.
    Every round it settles stale retry claims; every few seconds it also rereads the
    settings and checks the alert thresholds, and once an hour applies retention."""
    js = collector.adapter.nc.jetstream()
    next_settings = next_prune = 0.0
    while not stop.is_set():
        try:
            loop_time = asyncio.get_running_loop().time()
            if loop_time >= next_settings:
                collector.dlq_rules = await database_sync_to_async(DlqRules.load)()
                await database_sync_to_async(check_thresholds)()
                next_settings = loop_time + SETTINGS_SECONDS
            if loop_time >= next_prune:
                await database_sync_to_async(prune)()
                next_prune = loop_time + 3600
            await follow_once(js)
            await database_sync_to_async(sweep_claims)()
        except Exception as error:  # the next round tries again
            log.warning("following retries failed: %s", error)
        await pause(stop, FOLLOW_SECONDS)


async def follow_once(js):
    """One round over the pending retries; returns how many were settled."""
    pending = await database_sync_to_async(_pending_retries)()
    floors = {}
    settled = 0
    for attempt_id, stream, seq, consumer, sent_at in pending:
        key = (stream, consumer)
        if key not in floors:
            floors[key] = await _ack_floor(js, stream, consumer)
        floor = floors[key]
        if floor is not None and floor >= seq:
            settled += await database_sync_to_async(_settle)(attempt_id, "consumed")
        elif sent_at < datetime.now(timezone.utc) - FOLLOW_GIVE_UP:
            settled += await database_sync_to_async(_settle)(attempt_id, "unknown")
    return settled


def sweep_claims():
    """Retry claims nobody holds: back to an operator, with what is known of them."""
    from collector.deadletters import claims

    swept = claims.sweep()
    if any(swept.values()):
        log.info("settled stale retry claims: %s", ", ".join(f"{n} {what}" for what, n in swept.items() if n))
    return swept


def _pending_retries():
    from collector.models import RetryAttempt

    rows = (RetryAttempt.objects.filter(followup=RetryAttempt.FollowUp.PENDING, stream_seq__isnull=False,
                                        outcome__in=RetryAttempt.LANDED)
            .values_list("id", "stream", "stream_seq", "dead_letter__consumer", "sent_at")[:5000])
    return list(rows)


async def _ack_floor(js, stream, consumer):
    """The lowest ack floor of the consumers that must take a message in `stream`, or None."""
    try:
        try:
            infos = [await js.consumer_info(stream, consumer)] if consumer else []
        except NotFoundError:
            infos = []  # a service name from a DLQ header, not a durable: every consumer counts
        if not infos:
            infos = [info for info in await js.consumers_info(stream) if info.name != OBSERVER]
    except (NotFoundError, nats.errors.Error, asyncio.TimeoutError):
        return None
    if not infos:
        return None
    return min(info.ack_floor.stream_seq for info in infos)


def _settle(attempt_id, followup):
    from django.utils import timezone as dj_timezone

    from collector.models import RetryAttempt

    # Only a pending one: a death recorded meanwhile by capture wins.
    return RetryAttempt.objects.filter(pk=attempt_id, followup=RetryAttempt.FollowUp.PENDING).update(
        followup=followup, followed_at=dj_timezone.now())
