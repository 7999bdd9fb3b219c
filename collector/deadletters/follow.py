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
    for attempt_id, stream, seq, consumer, sent_at, kind, broker_id in pending:
        if kind == "kafka":
            consumed = await database_sync_to_async(_kafka_consumed)(broker_id, stream, seq, consumer)
        else:
            key = (stream, consumer)
            if key not in floors:
                floors[key] = await _ack_floor(js, stream, consumer)
            floor = floors[key]
            consumed = floor is not None and floor >= seq
        if consumed:
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
            .values_list("id", "stream", "stream_seq", "dead_letter__consumer", "sent_at", "dead_letter__broker__kind",
                         "dead_letter__broker_id")[:5000])
    return list(rows)


def _kafka_consumed(broker_id, topic, seq, group):
    """Whether a retry sent to a Kafka topic (at `seq`: partition and offset) is consumed:
    the group that gave up on it (else every group on the topic) has committed past it, by
    the lag sampler's latest reading of its partitions (no broker call)."""
    from collector.brokers.kafka import partition_offset
    from collector.models import Consumer

    groups = Consumer.objects.filter(broker_id=broker_id, stream=topic, kind="kafka", observer=False,
                                     gone_at__isnull=True)
    named = [c for c in groups if c.name == group] if group else []
    groups = named or list(groups)
    if not groups:
        return False
    partition, offset = partition_offset(seq)
    for consumer in groups:
        committed = {p["partition"]: p["committed"] for p in (consumer.config or {}).get("partitions") or []}
        if committed.get(partition, -1) <= offset:
            return False
    return True


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
