"""Dead-letter capture, and following what became of a retry.

Two ways a message dies, both stored as `DeadLetter` rows, each once (`key` is unique):

- JetStream gives up on it: the server's MAX_DELIVERIES and MSG_TERMINATED advisories name
  the stream, consumer and sequence; the message itself is fetched from the stream.
- A service sends it to a DLQ subject by convention (`orders.dlq`, `dlq.orders`,
  `orders.deadletter`): the collector stores it like any message, and the `on_commit`
  hook records it as a dead letter linked to that stored event.

`follow` watches republished messages until the failing consumer's ack floor passes them
(consumed) or they come back as a new dead letter (died again).
"""
import asyncio
import json
import logging
import re
from datetime import datetime, timedelta, timezone

import nats
from channels.db import database_sync_to_async
from nats.js.errors import NotFoundError

from collector.adapters.nats import OBSERVER
from collector.subjects import parse_patterns

log = logging.getLogger("eventscope.deadletters")

ADVISORIES = {
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>": "max_deliveries",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>": "terminated",
}
RETRY_OF = "Eventscope-Retry-Of"
RETRY_ATTEMPT = "Eventscope-Attempt"
RETRIED_BY = "Eventscope-Retried-By"
REASON_HEADER = "X-Dead-Letter-Reason"  # a service may say why, with one of the reason values
FOLLOW_SECONDS = 2.0
FOLLOW_GIVE_UP = timedelta(days=1)
SETTINGS_SECONDS = 10.0


def install(collector):
    """Add dead-letter capture and retry follow-up to a collector, before it runs."""
    collector.extensions.extend([start, follow])
    collector.after_commit.append(on_commit)


# --- DLQ subjects ----------------------------------------------------------------------


def dlq_match(pattern, subject):
    """The tokens `pattern`'s wildcards matched in `subject`, or None when it does not match.
    `*` is one token; `>` is one or more tokens wherever it stands, so `>.dlq` is any
    subject ending in `.dlq`."""
    return _match(pattern.split("."), subject.split("."))


def _match(pattern, tokens):
    if not pattern:
        return [] if not tokens else None
    head, rest = pattern[0], pattern[1:]
    if head == ">":
        for taken in range(len(tokens) - len(rest), 0, -1):
            found = _match(rest, tokens[taken:])
            if found is not None:
                return tokens[:taken] + found
        return None
    if not tokens or (head != "*" and head != tokens[0]):
        return None
    found = _match(rest, tokens[1:])
    if found is None:
        return None
    return ([tokens[0]] if head == "*" else []) + found


class DlqRules:
    """The DLQ conventions from `DeadLetterSettings`, ready to apply to stored rows."""

    def __init__(self, patterns, topic_headers, error_headers, attempts_headers):
        self.patterns = patterns
        self.topic_headers = [h.lower() for h in topic_headers]
        self.error_headers = [h.lower() for h in error_headers]
        self.attempts_headers = [h.lower() for h in attempts_headers]

    @classmethod
    def load(cls):
        from collector.models import DeadLetterSettings

        found = DeadLetterSettings.load()
        return cls(parse_patterns(found.dlq_patterns), parse_patterns(found.topic_headers),
                   parse_patterns(found.error_headers), parse_patterns(found.attempts_headers))

    def original_topic(self, subject):
        """The topic a DLQ subject stands for, or None when `subject` is no DLQ subject."""
        for pattern in self.patterns:
            tokens = dlq_match(pattern, subject)
            if tokens:
                return ".".join(tokens)
        return None

    def letter_for(self, row, event_id):
        """A DeadLetter (unsaved) for a stored row on a DLQ subject, or None."""
        from collector.models import DeadLetter

        topic = self.original_topic(row.subject)
        if topic is None:
            return None
        headers = {k.lower(): v for k, v in (row.headers or {}).items()}
        topic = _first(headers, self.topic_headers) or topic
        attempts = _first(headers, self.attempts_headers)
        reason = headers.get(REASON_HEADER.lower(), "")
        letter = DeadLetter(
            key=f"dlq:{row.broker_id}:{row.stream}:{row.seq}:{row.ts.isoformat()}",
            broker_id=row.broker_id,
            reason=reason if reason in DeadLetter.Reason.values else DeadLetter.Reason.DLQ_SUBJECT,
            subject=topic, dlq_subject=row.subject, stream=row.stream, consumer=row.producer or "",
            stream_seq=row.seq if row.stream else None, event_id=event_id, headers=row.headers,
            raw=None if row.truncated else bytes(row.raw), size=row.size,
            error=_first(headers, self.error_headers) or "",
            deliveries=int(attempts) if attempts and attempts.strip().isdigit() else None,
            trace_id=row.trace_id or "", span_id=row.span_id or "", first_seen=row.ts, last_seen=row.ts,
        )
        if row.truncated:
            letter.note = "stored truncated by the payload size cap: it cannot be retried as it was"
        return letter


def _first(headers, names):
    for name in names:
        if headers.get(name):
            return headers[name]
    return None


async def on_commit(collector, rows):
    """After-commit hook: rows on DLQ subjects become dead letters linked to their events.
    Runs before the batch is acked, so a failure here means a redelivery, never a loss."""
    if not rows:
        return
    rules = getattr(collector, "dlq_rules", None)
    if rules is None:
        rules = collector.dlq_rules = await database_sync_to_async(DlqRules.load)()
    candidates = [row for row in rows if rules.original_topic(row.subject) is not None]
    if candidates:
        await _until_stored(collector, database_sync_to_async(_store_dlq_rows), rules, candidates)


async def _until_stored(collector, store, *args):
    from collector.service import Abandoned

    wait = 0.25
    while True:
        try:
            return await store(*args)
        except Exception as error:  # the database is down or refused: the batch stays unacked
            if collector.stop.is_set():
                raise Abandoned() from error
            log.warning("storing dead letters failed (%s); retrying in %.2f s", error, wait)
            await asyncio.sleep(wait)
            wait = min(5.0, wait * 2)


def _store_dlq_rows(rules, rows):
    ids = _event_ids(rows)
    letters = [rules.letter_for(row, ids.get((row.stream, row.seq, row.ts))) for row in rows]
    return store_letters([letter for letter in letters if letter is not None])


def _event_ids(rows):
    """Event ids of committed rows, by (stream, seq, ts): the events table is partitioned
    on ts, so the time keeps the lookup to one partition."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.stream, e.seq, e.ts FROM collector_event e
            JOIN unnest(%s::text[], %s::int8[], %s::timestamptz[]) AS k(stream, seq, ts)
              ON e.stream = k.stream AND e.seq = k.seq AND e.ts = k.ts
            WHERE e.broker_id = %s
            """,
            [[r.stream for r in rows], [r.seq for r in rows], [r.ts for r in rows], rows[0].broker_id],
        )
        return {(stream, seq, ts): ident for ident, stream, seq, ts in cursor.fetchall()}


def store_letters(letters):
    """Store dead letters, each once. A new one is counted in the rollup, and when it is
    a retried message dying again it is linked to the dead letter it was a retry of.
    Idempotent. Returns the new ones."""
    from django.db import transaction

    from collector.models import DeadLetter

    new = []
    for letter in letters:
        with transaction.atomic():
            if DeadLetter.objects.filter(key=letter.key).exists():
                continue
            _link_to_earlier_death(letter)
            saved, created = DeadLetter.objects.get_or_create(key=letter.key, defaults=_fields(letter))
            if created:
                _count(saved)
                _record_death_of_retry(saved)
                new.append(saved)
    return new


def _fields(letter):
    return {f.attname: getattr(letter, f.attname) for f in letter._meta.concrete_fields if f.attname not in ("id", "key")}


def _provenance(letter):
    headers = {k.lower(): v for k, v in (letter.headers or {}).items()}
    try:
        return int(headers[RETRY_OF.lower()]), int(headers[RETRY_ATTEMPT.lower()])
    except (KeyError, ValueError):
        return None, None


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
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO collector_deadletterrollup (minute, subject, consumer, reason, count)
            VALUES (date_trunc('minute', %s::timestamptz), %s, %s, %s, 1)
            ON CONFLICT (minute, subject, consumer, reason) DO UPDATE SET count = collector_deadletterrollup.count + 1
            """,
            [letter.first_seen, letter.subject, letter.consumer, letter.reason],
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


# --- following retries ---------------------------------------------------------------


async def follow(collector, stop):
    """Extension: decide what became of each republished message. Consumed when every
    consumer that should take it (the one that gave up, or every consumer of the stream
    when that is unknown) has an ack floor at or past it; a death is recorded by capture.
    Every few seconds it also rereads the settings and checks the alert thresholds, and
    once an hour applies retention."""
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
        except Exception as error:  # the next round tries again
            log.warning("following retries failed: %s", error)
        try:
            await asyncio.wait_for(stop.wait(), FOLLOW_SECONDS)
        except asyncio.TimeoutError:
            pass


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


def _pending_retries():
    from collector.models import RetryAttempt

    rows = (RetryAttempt.objects.filter(followup=RetryAttempt.FollowUp.PENDING, stream_seq__isnull=False,
                                        outcome__in=[RetryAttempt.Outcome.SENT, RetryAttempt.Outcome.DUPLICATE])
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


# --- alerts and retention ---------------------------------------------------------------


def check_thresholds(now=None):
    """Record an alert for each threshold crossed (once per its window) and post it to the
    threshold's webhook. Counts come from the rollup. Returns the new alerts."""
    from django.db.models import Sum
    from django.utils import timezone as dj_timezone

    from collector.models import DeadLetterAlert, DeadLetterRollup, DeadLetterThreshold
    from collector.subjects import matches

    now = now or dj_timezone.now()
    raised = []
    for threshold in DeadLetterThreshold.objects.filter(enabled=True):
        since = now - timedelta(minutes=threshold.minutes)
        if DeadLetterAlert.objects.filter(threshold=threshold, at__gte=since).exists():
            continue  # already raised for this window
        rows = DeadLetterRollup.objects.filter(minute__gte=since.replace(second=0, microsecond=0))
        if threshold.consumer:
            rows = rows.filter(consumer=threshold.consumer)
        per_subject = rows.values_list("subject").annotate(total=Sum("count"))
        counts = {subject: total for subject, total in per_subject if matches(threshold.subject_pattern, subject)}
        total = sum(counts.values())
        if total <= threshold.count:
            continue
        alert = DeadLetterAlert.objects.create(threshold=threshold, count=total,
                                               detail={"subjects": counts, "since": since.isoformat()})
        if threshold.webhook:
            alert.notified = notify(threshold.webhook, {
                "alert": alert.id, "threshold": str(threshold), "count": total, "subjects": counts,
                "since": since.isoformat()})
            alert.save(update_fields=["notified"])
        raised.append(alert)
    return raised


def notify(url, body, timeout=5):
    """POST the alert as JSON; returns the outcome as one line (kept with the alert)."""
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"posted: HTTP {response.status}"
    except Exception as error:  # a webhook that is down must not stop capture
        return f"not posted: {error}"[:500]


def prune(now=None):
    """Delete dead letters and audit entries past their retention (DeadLetterSettings)."""
    from django.utils import timezone as dj_timezone

    from collector.models import AuditEntry, DeadLetter, DeadLetterRollup, DeadLetterSettings

    now = now or dj_timezone.now()
    kept = DeadLetterSettings.load()
    cutoff = now - timedelta(days=kept.retention_days)
    letters, _ = DeadLetter.objects.filter(first_seen__lt=cutoff).delete()
    DeadLetterRollup.objects.filter(minute__lt=cutoff).delete()
    audits, _ = AuditEntry.objects.filter(at__lt=now - timedelta(days=kept.audit_retention_days)).delete()
    return letters, audits
