"""Dead-letter capture. Two ways a message dies, both stored as `DeadLetter` rows, each
once (`key` is unique):

- JetStream gives up on it: the server's MAX_DELIVERIES and MSG_TERMINATED advisories name
  the stream, consumer and sequence; the message itself is fetched from the stream.
- A service sends it to a DLQ subject by convention (`orders.dlq`, `dlq.orders`,
  `orders.deadletter`): the collector stores it like any message, and the `on_commit`
  hook records it as a dead letter linked to that stored event.
- A RabbitMQ queue dead-letters it through its dead-letter exchange: the tap stores the
  copy with its `x-death` header, and the same hook records it (`rabbitmq.py`).
"""
import asyncio
import json
import logging
import re
from datetime import datetime, timezone

import nats
from channels.db import database_sync_to_async
from nats.js.errors import NotFoundError

from collector.brokers.nats import OBSERVER
from collector.db import is_outage
from collector.deadletters import follow as following
from collector.deadletters import rabbitmq as amqp
from collector.deadletters.rules import RETRY_ATTEMPT, RETRY_OF, DlqRules

log = logging.getLogger("eventscope.deadletters")

ADVISORIES = {
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>": "max_deliveries",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>": "terminated",
}


def install(collector):
    """Add dead-letter capture and retry follow-up to a collector, before it runs."""
    collector.extensions.extend([start, following.follow])
    collector.after_commit.append(on_commit)


# --- DLQ subjects ----------------------------------------------------------------------


async def on_commit(collector, rows):
    """After-commit hook: rows on DLQ subjects become dead letters linked to their events.
    Runs before the batch is acked, so a failure here means a redelivery, never a loss."""
    if not rows:
        return
    kafka = _kafka_brokers(collector)
    if kafka:
        kafka_rows = [row for row in rows if row.broker_id in kafka]
        rows = [row for row in rows if row.broker_id not in kafka]
        if kafka_rows:
            await _on_kafka_commit(collector, kafka_rows)
        if not rows:
            return
    rules = getattr(collector, "dlq_rules", None)
    if rules is None:
        rules = collector.dlq_rules = await database_sync_to_async(DlqRules.load)()
    dead = [row for row in rows if amqp.is_dead_letter(row)]
    # A batch holds few distinct subjects: each is matched against the patterns once.
    dlq = {subject for subject in {row.subject for row in rows} if rules.original_topic(subject) is not None}
    candidates = [row for row in rows if row.subject in dlq and not amqp.is_dead_letter(row)] if dlq else []
    if candidates:
        await _until_stored(collector, database_sync_to_async(_store_dlq_rows), rules, candidates)
    if dead:
        await _until_stored(collector, database_sync_to_async(_store_amqp_rows), dead)


def _kafka_brokers(collector):
    """Ids of the Kafka brokers the collector taps: their dead letters follow Kafka's conventions."""
    taps = getattr(collector, "taps", None)
    return {a.broker.id for a in (taps.adapters if taps else []) if a.kind == "kafka"}


async def _on_kafka_commit(collector, rows):
    from collector.deadletters.kafka import KafkaDltRules

    rules = getattr(collector, "kafka_dlt_rules", None)
    if rules is None:
        rules = collector.kafka_dlt_rules = await database_sync_to_async(KafkaDltRules.load)()
    # Kafka Connect's dead-letter topic may have any name: its header says what it is.
    # (Spring's retry topics carry kafka_dlt-* headers too, so for Spring the name decides.)
    candidates = [row for row in rows if rules.original_topic(row.subject) is not None
                  or "__connect.errors.topic" in (row.headers or {})]
    for broker_id in {row.broker_id for row in candidates}:
        own = [row for row in candidates if row.broker_id == broker_id]
        await _until_stored(collector, database_sync_to_async(_store_dlq_rows), rules, own)


async def _until_stored(collector, store, *args):
    """Run `store` until the database takes it. An outage is waited out with growing
    waits (the batch stays unacked meanwhile); any other failure is a bug or a row no
    rule foresaw: it is logged and the batch goes on, since retrying cannot cure it and
    would hold back every message behind it."""
    from collector.ingest.service import Abandoned

    wait = 0.25
    while True:
        try:
            return await store(*args)
        except Exception as error:
            if not is_outage(error):
                log.exception("dead letters not stored (%s); going on without them", error)
                return None
            if collector.stop.is_set():
                raise Abandoned() from error
            log.warning("storing dead letters failed (%s); retrying in %.2f s", error, wait)
            await asyncio.sleep(wait)
            wait = min(5.0, wait * 2)


def _store_dlq_rows(rules, rows):
    ids = _event_ids(rows)
    letters = [rules.letter_for(row, ids.get((row.broker_id, row.stream, row.seq, row.ts))) for row in rows]
    return store_letters([letter for letter in letters if letter is not None])


def _store_amqp_rows(rows):
    ids = _event_ids(rows)
    letters = [amqp.letter_for(row, ids.get((row.broker_id, row.stream, row.seq, row.ts))) for row in rows]
    return store_letters([letter for letter in letters if letter is not None])


def _event_ids(rows):
    """Event ids of committed rows, by (broker, stream, seq, ts): the events table is
    partitioned on ts, so the time keeps the lookup to one partition. A batch may hold
    rows of several brokers."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.broker_id, e.stream, e.seq, e.ts FROM collector_event e
            JOIN unnest(%s::int8[], %s::text[], %s::int8[], %s::timestamptz[]) AS k(broker_id, stream, seq, ts)
              ON e.broker_id = k.broker_id AND e.stream = k.stream AND e.seq = k.seq AND e.ts = k.ts
            """,
            [[r.broker_id for r in rows], [r.stream for r in rows], [r.seq for r in rows], [r.ts for r in rows]],
        )
        return {(broker, stream, seq, ts): ident for ident, broker, stream, seq, ts in cursor.fetchall()}


def store_letters(letters):
    """Store dead letters, each once. A new one is counted in the rollup, and when it is
    a retried message dying again it is linked to the dead letter it was a retry of.
    Idempotent. Returns the new ones.

    Each letter is stored in its own transaction: one the database refuses is stored
    again without the fields it took from headers, with a note saying why, and never
    holds back the others. A database outage is raised for the caller to wait out."""
    new = []
    for letter in letters:
        try:
            saved = _store_one(letter)
        except Exception as error:
            if is_outage(error):
                raise
            saved = _store_refused(letter, error)
        if saved is not None:
            new.append(saved)
    return new


def _store_one(letter):
    from django.db import transaction

    from collector.models import DeadLetter

    with transaction.atomic():
        if DeadLetter.objects.filter(key=letter.key).exists():
            return None
        _link_to_earlier_death(letter)
        saved, created = DeadLetter.objects.get_or_create(key=letter.key, defaults=_fields(letter))
        if not created:
            return None
        _count(saved)
        _record_death_of_retry(saved)
        return saved


def _store_refused(letter, error):
    """Store a letter the database refused, keeping its message (subject, raw bytes) and
    leaving out what came from its headers; when even that is refused, log it and go on
    (its event is stored, so the message itself is not lost)."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    log.warning("dead letter %s refused (%s); stored without its header fields", letter.key, reason)
    letter.headers, letter.deliveries, letter.error, letter.retry_of_id = None, None, "", None
    letter.trace_id = letter.span_id = ""
    letter.note = "; ".join(filter(None, [letter.note, f"refused as received ({reason}): headers, error and "
                                                       f"delivery count left out"]))
    try:
        return _store_one(letter)
    except Exception as again:
        if is_outage(again):
            raise
        log.error("dead letter %s not stored: %s", letter.key, again)
        return None


def _fields(letter):
    return {f.attname: getattr(letter, f.attname) for f in letter._meta.concrete_fields if f.attname not in ("id", "key")}


def _provenance(letter):
    headers = {k.lower(): v for k, v in (letter.headers or {}).items()}
    try:
        earlier, attempt = int(headers[RETRY_OF.lower()]), int(headers[RETRY_ATTEMPT.lower()])
    except (KeyError, ValueError, TypeError):
        return None, None
    if not (0 < earlier < 2**63 and 0 <= attempt < 2**31):  # the columns' ranges: anything else is no provenance
        return None, None
    return earlier, attempt


def _link_to_earlier_death(letter):
    from collector.models import DeadLetter

    earlier, _ = _provenance(letter)
    if earlier is not None and DeadLetter.objects.filter(pk=earlier).exists():
        letter.retry_of_id = earlier


def _record_death_of_retry(letter):
    from django.utils import timezone as dj_timezone

    from collector.models import RetryAttempt

    earlier, attempt = _provenance(letter)
    if earlier is None or letter.retry_of_id is None:
        return
    RetryAttempt.objects.filter(dead_letter_id=earlier, attempt=attempt).update(
        followup=RetryAttempt.FollowUp.DIED_AGAIN, next_dead_letter=letter, followed_at=dj_timezone.now())


def _count(letter):
    """Add the new letter to the per-minute and hourly rollups, in one statement. Counts only
    add, so the order letters arrive in never matters; a replay is never counted (only a new
    letter reaches here)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH minute AS (
                INSERT INTO collector_deadletterrollup (minute, subject, consumer, reason, count)
                VALUES (date_trunc('minute', %(at)s::timestamptz), %(subject)s, %(consumer)s, %(reason)s, 1)
                ON CONFLICT (minute, subject, consumer, reason)
                DO UPDATE SET count = collector_deadletterrollup.count + 1
                RETURNING 1
            )
            INSERT INTO collector_deadletterhourrollup (hour, subject, consumer, reason, count)
            VALUES (date_trunc('hour', %(at)s::timestamptz), %(subject)s, %(consumer)s, %(reason)s, 1)
            ON CONFLICT (hour, subject, consumer, reason) DO UPDATE SET count = collector_deadletterhourrollup.count + 1
            """,
            {"at": letter.first_seen, "subject": letter.subject, "consumer": letter.consumer, "reason": letter.reason},
        )


# --- JetStream advisories ------------------------------------------------------------


async def start(collector, stop):
    """Extension: subscribe to the consumer advisories and store each dead message."""
    nc = collector.adapter.nc
    js = nc.jetstream()

    async def on_advisory(msg):
        try:
            advisory = json.loads(msg.data)
        except ValueError:
            log.warning("unreadable advisory on %s", msg.subject)
            return
        if advisory.get("consumer") == OBSERVER:
            return  # the collector's own observer: it never gives up on a message it stores
        letter = await letter_from_advisory(js, collector.broker.id, ADVISORIES[pattern_of(msg.subject)], advisory)
        await _until_stored(collector, database_sync_to_async(store_letters), [letter])

    subscriptions = [await nc.subscribe(subject, cb=on_advisory) for subject in ADVISORIES]
    try:
        await stop.wait()
    finally:
        for subscription in subscriptions:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error:
                pass  # the connection closed first


def pattern_of(subject):
    return next(p for p in ADVISORIES if subject.startswith(p[:-1]))


async def letter_from_advisory(js, broker_id, reason, advisory):
    """A DeadLetter (unsaved) for an advisory, with the message fetched from its stream."""
    from collector.models import DeadLetter

    stream, consumer, seq = advisory["stream"], advisory["consumer"], int(advisory["stream_seq"])
    when = _parse_time(advisory.get("timestamp"))
    letter = DeadLetter(
        key=f"js:{broker_id}:{stream}:{consumer}:{seq}", broker_id=broker_id, reason=reason, stream=stream,
        consumer=consumer, stream_seq=seq, deliveries=advisory.get("deliveries"), first_seen=when, last_seen=when,
        error=advisory.get("reason") or "", subject="",
    )
    try:
        original = await js.get_msg(stream, seq)
    except NotFoundError:
        letter.note = f"stream {stream} no longer has sequence {seq}: only the advisory is kept"
        letter.raw = None
        return letter
    letter.subject = original.subject
    letter.headers = {k: v for k, v in (original.headers or {}).items()} or None
    letter.raw = bytes(original.data or b"")
    letter.size = len(letter.raw)
    letter.event_id = await database_sync_to_async(_event_id)(broker_id, stream, seq, original.time)
    letter.trace_id, letter.span_id = _trace_of(letter.headers)
    return letter


def _parse_time(text):
    """Advisory times carry nanoseconds, more than Python's parser takes."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?", text or "")
    if not match:
        return datetime.now(timezone.utc)
    return datetime.fromisoformat(match.group(1) + (match.group(2) or "")).replace(tzinfo=timezone.utc)


def _event_id(broker_id, stream, seq, ts):
    from collector.models import Event

    found = Event.objects.filter(broker_id=broker_id, stream=stream, seq=seq)
    if ts is not None:
        found = found.filter(ts=ts)
    return found.values_list("id", flat=True).first()


def _trace_of(headers):
    for name, value in (headers or {}).items():
        if name.lower() == "traceparent":
            parts = value.split("-")
            if len(parts) >= 3:
                return parts[1], parts[2]
    return "", ""
