"""Retrying dead letters: the claim the web side makes, and the Celery tasks that republish;
and the delivery of dead-letter alerts, which the collector queues by task name.

One click, one message. A retry form carries the attempt number it was rendered with;
`claim` moves the dead letter to `retrying` and to the next attempt with one conditional
UPDATE, so of two clicks, two tabs or a resubmitted form only one finds the row as it
was. The worker then takes the attempt with a second conditional UPDATE (queued ->
sending), so a task delivered twice sends once; and the message carries
`Nats-Msg-Id: eventscope-retry-<dead letter>-<attempt>`, so when a worker dies between
publishing and recording, the redelivered task's second send is dropped by JetStream.
"""
import asyncio
import json
import time

import nats
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from nats.js.errors import NoStreamResponseError

from collector.brokers.nats import secured_options
from collector.deadletters.rules import RETRIED_BY, RETRY_ATTEMPT, RETRY_OF
from collector.models import (
    AuditEntry,
    DeadLetter,
    DeadLetterSettings,
    RetryAttempt,
    RetryJob,
)

# Tasks bound to the project's app (not `shared_task`), so `.delay()` reaches its broker from
# whichever process enqueues: the web side included.
from dashboard.celery import app

CHUNK = 500
STALE_SENDING_SECONDS = 300  # far longer than a chunk takes to publish
# Headers of the dead message that must not travel with the retry: the old dedup key and
# publish expectations would make JetStream drop or refuse it; provenance is set afresh.
DROPPED_HEADERS = ("nats-msg-id", "nats-expected-", "eventscope-retry-of", "eventscope-attempt", "eventscope-retried-by")
MSG_ID_PREFIX = "eventscope-retry-"


def msg_id(dead_letter_id, attempt):
    return f"{MSG_ID_PREFIX}{dead_letter_id}-{attempt}"


# --- claims (web side and bulk task) ----------------------------------------------------


def claim(dead_letter_id, seen_attempt, user, edited_headers=None, edited_raw=None):
    """Claim the next retry of one dead letter if it is still at `seen_attempt` and
    retryable. Returns the new RetryAttempt, or None when someone else got there first."""
    with transaction.atomic():
        won = DeadLetter.objects.filter(
            pk=dead_letter_id, attempt=seen_attempt, status__in=DeadLetter.RETRYABLE, raw__isnull=False,
        ).update(status=DeadLetter.Status.RETRYING, attempt=F("attempt") + 1, status_reason="", updated=timezone.now())
        if won != 1:
            return None
        subject = DeadLetter.objects.values_list("subject", flat=True).get(pk=dead_letter_id)
        return RetryAttempt.objects.create(
            dead_letter_id=dead_letter_id, attempt=seen_attempt + 1, user=user,
            msg_id=msg_id(dead_letter_id, seen_attempt + 1), subject=subject,
            edited_headers=edited_headers, edited_raw=edited_raw,
        )


def claim_many(seen, user, job=None):
    """`claim` for many dead letters at once ({id: attempt seen}), in one statement that
    also makes their RetryAttempt rows. Returns the attempt ids won."""
    if not seen:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH won AS (
                UPDATE collector_deadletter d
                SET status = 'retrying', attempt = d.attempt + 1, status_reason = '', updated = now()
                FROM unnest(%s::int8[], %s::int4[]) AS k(id, attempt)
                WHERE d.id = k.id AND d.attempt = k.attempt AND d.status IN ('new', 'retried') AND d.raw IS NOT NULL
                RETURNING d.id, d.attempt, d.subject
            )
            INSERT INTO collector_retryattempt (dead_letter_id, attempt, job_id, user_id, msg_id, created, subject,
                                                outcome, error, stream, followup)
            SELECT id, attempt, %s, %s, %s || id || '-' || attempt, now(), subject, 'queued', '', '', 'pending'
            FROM won
            RETURNING id
            """,
            [list(seen), list(seen.values()), job.id if job else None, user.id if user else None, MSG_ID_PREFIX],
        )
        return [row[0] for row in cursor.fetchall()]


# --- sending (worker side) --------------------------------------------------------------

def send_attempts(attempt_ids, retried_by, publisher=None):
    """Republish the queued attempts among `attempt_ids` and record each outcome.
    Returns {outcome: count}."""
    with connection.cursor() as cursor:
        # The worker's own claim: an attempt is sent by the one task that moves it on
        # (queued -> sending); the same statement loads what is to be sent. An attempt left
        # `sending` by a worker that died is taken again once stale: its Nats-Msg-Id is the
        # same, so JetStream drops the copy if the first send had got through.
        cursor.execute(
            """
            UPDATE collector_retryattempt r SET outcome = 'sending', sent_at = now()
            FROM collector_deadletter d JOIN collector_broker b ON b.id = d.broker_id
            WHERE r.id = ANY(%s) AND d.id = r.dead_letter_id
              AND (r.outcome = 'queued' OR (r.outcome = 'sending' AND r.sent_at < now() - %s * interval '1 second'))
            RETURNING r.id, r.dead_letter_id, r.attempt, r.msg_id, r.subject, r.edited_headers, r.edited_raw,
                      d.headers, d.raw, b.url, (SELECT username FROM auth_user u WHERE u.id = r.user_id)
            """,
            [list(attempt_ids), STALE_SENDING_SECONDS],
        )
        columns = [c.name for c in cursor.description]
        mine = [dict(zip(columns, row)) for row in cursor.fetchall()]
    own = publisher is None
    publisher = publisher or Publisher()
    outcomes = {}
    by_broker = {}
    try:
        for attempt in mine:
            by_broker.setdefault(attempt["url"], []).append(attempt)
        for url, group in by_broker.items():
            results = publisher.publish(url, [(a["subject"], headers_for(a, retried_by), _payload(a)) for a in group])
            record(group, results)
            for outcome, *_ in results:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        if own:
            publisher.close()
    return outcomes


def headers_for(attempt, retried_by):
    """The dead message's headers (or an admin's edit) with fresh provenance and dedup key."""
    base = attempt["edited_headers"] if attempt["edited_headers"] is not None else attempt["headers"]
    if isinstance(base, str):
        base = json.loads(base)  # Django's cursor hands jsonb over as text
    headers = {k: v for k, v in (base or {}).items() if not k.lower().startswith(DROPPED_HEADERS)}
    headers.update({"Nats-Msg-Id": attempt["msg_id"], RETRY_OF: str(attempt["dead_letter_id"]),
                    RETRY_ATTEMPT: str(attempt["attempt"]), RETRIED_BY: attempt["username"] or retried_by or ""})
    return headers


def _payload(attempt):
    return bytes(attempt["edited_raw"] if attempt["edited_raw"] is not None else attempt["raw"])


class Publisher:
    """JetStream connections, one per broker, kept for the length of a task on an event
    loop of its own, so a bulk job does not connect once per chunk."""

    def __init__(self, timeout=5.0):
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.connections = {}

    def publish(self, url, messages):
        return self.loop.run_until_complete(self._publish(url, messages))

    def close(self):
        for nc in self.connections.values():
            self.loop.run_until_complete(nc.close())
        self.loop.close()

    async def _publish(self, url, messages):
        """Publish [(subject, headers, data)] through JetStream only (a retry must be
        deduplicated, which core NATS cannot do), pipelined. Returns [(outcome, stream, seq, error)]."""
        nc = self.connections.get(url)
        if nc is None or not nc.is_connected:
            try:
                # nats-py retries a refused first connect forever when max_reconnect_attempts is 0:
                # 1 means two tries, and the overall timeout bounds it whatever the client does.
                nc = await asyncio.wait_for(nats.connect(
                    url.split(","), connect_timeout=self.timeout, max_reconnect_attempts=1, reconnect_time_wait=0.5,
                    allow_reconnect=False, error_cb=_quiet, **secured_options(url)), 2 * self.timeout)
            except Exception as error:  # every message stays unsent, with the reason
                return [("failed", "", None, f"broker unreachable: {error or type(error).__name__}")] * len(messages)
            self.connections[url] = nc
        js = nc.jetstream(timeout=self.timeout)
        pending = []
        for subject, headers, data in messages:
            try:
                pending.append(await js.publish_async(subject, data, headers=headers))
            except Exception as error:  # the connection went away mid-way: this one was not sent
                pending.append(error)
        futures = [p for p in pending if isinstance(p, asyncio.Future)]
        if futures:
            await asyncio.wait(futures, timeout=self.timeout)
        return [_outcome(p, subject) for p, (subject, _, _) in zip(pending, messages)]


async def _quiet(error):
    pass  # connection errors are reported with the outcome of each message


def _outcome(pending, subject):
    if isinstance(pending, Exception):
        return ("failed", "", None, f"not sent: {pending or type(pending).__name__}")
    if not pending.done():
        pending.cancel()
        return ("failed", "", None, "no acknowledgement from JetStream in time: it may or may not be stored")
    error = pending.exception()
    if isinstance(error, NoStreamResponseError):
        return ("failed", "", None, f"no stream captures {subject} any more: nothing was sent")
    if error is not None:
        return ("failed", "", None, f"not sent: {error or type(error).__name__}")
    ack = pending.result()
    return ("duplicate" if ack.duplicate else "sent", ack.stream, ack.seq, "")


def record(attempts, results):
    """Write outcomes: a sent attempt leaves its dead letter `retried`; a failed one puts it
    back to `new` with the error, so it can be retried later as a new attempt."""
    now = timezone.now()
    rows = [(a["id"], a["dead_letter_id"], outcome, stream, seq, error) for a, (outcome, stream, seq, error)
            in zip(attempts, results)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH k AS (SELECT * FROM unnest(%s::int8[], %s::int8[], %s::text[], %s::text[], %s::int8[], %s::text[])
                       AS k(id, letter, outcome, stream, seq, error)),
            a AS (
                UPDATE collector_retryattempt r
                SET outcome = k.outcome, stream = k.stream, stream_seq = k.seq, error = k.error,
                    sent_at = CASE WHEN k.outcome = 'failed' THEN NULL ELSE %s END,
                    followup = CASE WHEN k.outcome = 'failed' THEN 'unknown' ELSE r.followup END
                FROM k WHERE r.id = k.id RETURNING 1
            )
            UPDATE collector_deadletter d
            SET status = CASE WHEN k.outcome = 'failed' THEN 'new' ELSE 'retried' END,
                status_reason = k.error, updated = %s
            FROM k WHERE d.id = k.letter AND d.status = 'retrying'
            """,
            [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
             [r[4] for r in rows], [r[5] for r in rows], now, now],
        )


# --- tasks -----------------------------------------------------------------------------


@app.task(name="eventscope.retry_dead_letter")
def retry_dead_letter(attempt_id, audit_id):
    """Republish one claimed retry and put the outcome in its audit entry."""
    entry = AuditEntry.objects.select_related("user").get(pk=audit_id)
    outcomes = send_attempts([attempt_id], entry.user.get_username() if entry.user else "")
    attempt = RetryAttempt.objects.get(pk=attempt_id)
    if attempt.outcome == RetryAttempt.Outcome.FAILED:
        result = f"failed: {attempt.error}"
    elif attempt.stream_seq is not None:
        result = f"{attempt.get_outcome_display()} to {attempt.subject}: stream {attempt.stream} sequence {attempt.stream_seq}"
    else:
        result = "taken by another worker"
    if outcomes or not entry.result:
        entry.result = result[:500]
        entry.save(update_fields=["result"])
    return result


@app.task(name="eventscope.run_retry_job")
def run_retry_job(job_id, audit_id):
    """A bulk retry: claim and republish in chunks at most `bulk_rate` messages a second,
    keeping the job's counters current for the progress bar."""
    from collector.deadletters import readers as dlq_readers

    job = RetryJob.objects.select_related("user").get(pk=job_id)
    if not RetryJob.objects.filter(pk=job_id, state=RetryJob.State.QUEUED).update(state=RetryJob.State.RUNNING):
        return "already run"
    rate = max(DeadLetterSettings.load().bulk_rate, 1)
    who = job.user.get_username() if job.user else ""
    publisher = Publisher()
    try:
        for seen in dlq_readers.job_chunks(job.selection, CHUNK):
            started = time.monotonic()
            attempt_ids = claim_many(seen, job.user, job)
            outcomes = send_attempts(attempt_ids, who, publisher)
            sent = outcomes.get("sent", 0) + outcomes.get("duplicate", 0)
            RetryJob.objects.filter(pk=job_id).update(
                sent=F("sent") + sent, failed=F("failed") + outcomes.get("failed", 0),
                skipped=F("skipped") + len(seen) - len(attempt_ids))
            # The rate limit: a chunk of n messages takes at least n / rate seconds.
            pause = len(seen) / rate - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
    except Exception as error:
        RetryJob.objects.filter(pk=job_id).update(state=RetryJob.State.FAILED, error=str(error)[:500],
                                                  finished=timezone.now())
        AuditEntry.objects.filter(pk=audit_id).update(result=f"failed: {error}"[:500])
        raise
    finally:
        publisher.close()
    job.refresh_from_db()
    RetryJob.objects.filter(pk=job_id).update(state=RetryJob.State.DONE, finished=timezone.now())
    result = f"{job.sent} republished, {job.skipped} skipped (changed meanwhile), {job.failed} failed"
    AuditEntry.objects.filter(pk=audit_id).update(result=result)
    return result


@app.task(name="eventscope.send_alert")
def send_alert(alert_id):
    """Post one recorded dead-letter alert to its webhook (queued by the collector, which
    sends tasks by this name only); a second delivery of the task posts nothing."""
    from collector.deadletters.alerts import deliver

    return deliver(alert_id)
