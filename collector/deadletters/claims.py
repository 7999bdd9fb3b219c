"""Who holds a retry, and what becomes of a retry nobody holds: the claims of the web side
and bulk jobs, the worker's take, the outcomes it writes, and the sweep of stale claims.

One click, one message. A retry form carries the attempt number it was rendered with;
`claim` moves the dead letter to `retrying` and to the next attempt with one conditional
UPDATE, so of two clicks, two tabs or a resubmitted form only one finds the row as it
was. The worker then takes the attempt with a second conditional UPDATE (queued ->
sending), so a task delivered twice sends once; and the message carries
`Nats-Msg-Id: eventscope-retry-<dead letter>-<attempt>`, so JetStream drops a second copy
within the stream's duplicate window (past it, see `dashboard.deadletters.publisher`).

A worker that sends retries holds a PostgreSQL advisory lock for as long as it sends, and
writes the lock's key on every attempt it moves to `sending`. When the worker dies (a
prefork child killed, the whole worker killed, the machine gone), its database connection
closes and PostgreSQL frees the lock at once: a free lock on a `sending` attempt means
nobody is sending it, whatever the clock says. A bulk job's runner holds a lock on the job
the same way.

`sweep` (run by the collector's follow-up loop) puts claims nobody holds back in an
operator's hands: a queued attempt no worker took in time was never sent (failed, so a new
retry may go); a `sending` attempt whose worker is gone may or may not be on the stream
(`unknown`, so the next retry looks for it before sending); a bulk job whose runner is gone
is `stalled`.
"""
import secrets

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from collector.models import DeadLetter, RetryAttempt

MSG_ID_PREFIX = "eventscope-retry-"

# The two-key form of advisory locks, so they never meet a one-key lock of another program.
SENDER_LOCK = 0x45535331  # "ESS1": a worker sending attempts; the second key is random
JOB_LOCK = 0x45534A31  # "ESJ1": the runner of a bulk job; the second key is the job id


def stale_seconds():
    return settings.RETRY_STALE_SECONDS


def hold_sender_lock():
    """Take a fresh sender lock on this connection; returns its key."""
    key = secrets.randbelow(2**31 - 1) + 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [SENDER_LOCK, key])
    return key


def release_sender_lock(key):
    _unlock(SENDER_LOCK, key)


def try_job_lock(job_id):
    """True when this connection now runs the job: nobody else holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [JOB_LOCK, _job_key(job_id)])
        return cursor.fetchone()[0]


def release_job_lock(job_id):
    _unlock(JOB_LOCK, _job_key(job_id))


def _job_key(job_id):
    return int(job_id) % (2**31 - 1)


def _unlock(kind, key):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [kind, key])
    except Exception:  # a lost connection has freed it already
        connection.close_if_unusable_or_obsolete()


# The condition "nobody holds this attempt's sender lock", for SQL over collector_retryattempt r.
# pg_try_advisory_xact_lock takes the lock only until the statement's transaction ends.
SENDER_GONE = f"(r.sender IS NULL OR pg_try_advisory_xact_lock({SENDER_LOCK}, r.sender))"


UNKNOWN_ADVICE = ("Check again: it is looked for on the stream and sent only if absent. Or send it as a new message, "
                  "or mark the dead letter resolved.")
WORKER_GONE = "the worker sending it stopped before it knew whether the stream kept it"


def sweep(stale=None):
    """Settle claims nobody holds; returns {what: count}. Safe to run from several
    collectors at once: every change is one conditional UPDATE."""
    stale = stale_seconds() if stale is None else stale
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH gone AS (
                UPDATE collector_retryattempt r
                SET outcome = CASE WHEN r.first_sent_at IS NULL THEN 'failed' ELSE 'unknown' END,
                    followup = 'unknown',
                    error = CASE
                        WHEN r.first_sent_at IS NULL THEN
                            'no worker took this retry within ' || %(stale)s || ' s: nothing was sent'
                        ELSE 'outcome unknown: ' || %(gone)s END
                FROM collector_deadletter q
                WHERE q.id = r.dead_letter_id AND r.followup = 'pending'
                  AND ((r.outcome = 'queued' AND q.updated < now() - %(stale)s * interval '1 second')
                       OR (r.outcome = 'sending' AND r.sent_at < now() - %(stale)s * interval '1 second'
                           AND {SENDER_GONE}))
                RETURNING r.dead_letter_id, r.outcome, r.error
            )
            UPDATE collector_deadletter d
            SET status = CASE WHEN gone.outcome = 'failed' THEN 'new' ELSE 'unknown' END,
                status_reason = CASE WHEN gone.outcome = 'failed' THEN 'Not retried: ' || gone.error
                                     ELSE 'Outcome unknown: ' || %(gone)s || '. ' || %(advice)s END,
                updated = now()
            FROM gone WHERE d.id = gone.dead_letter_id AND d.status = 'retrying'
            RETURNING gone.outcome
            """,
            {"stale": stale, "gone": WORKER_GONE, "advice": UNKNOWN_ADVICE},
        )
        outcomes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            UPDATE collector_retryjob j
            SET state = 'stalled',
                error = 'no progress for ' || %(stale)s || ' s: the worker running it stopped; '
                        'it resumes if its task is delivered again'
            WHERE j.state IN ('queued', 'running')
              AND coalesce(j.heartbeat, j.created) < now() - %(stale)s * interval '1 second'
              AND pg_try_advisory_xact_lock(%(lock)s, (j.id %% 2147483647)::int4)
            """,
            {"stale": stale, "lock": JOB_LOCK},
        )
        stalled = cursor.rowcount
    return {"failed": outcomes.count("failed"), "unknown": outcomes.count("unknown"), "stalled": stalled}



# --- claims (web side and bulk jobs) ---------------------------------------------------


def msg_id(dead_letter_id, attempt):
    return f"{MSG_ID_PREFIX}{dead_letter_id}-{attempt}"


def claim(dead_letter_id, seen_attempt, user, edited_headers=None, edited_raw=None, as_new_message=False):
    """Claim the next retry of one dead letter if it is still at `seen_attempt` and
    retryable. Returns the new RetryAttempt, or None when someone else got there first.
    A dead letter whose outcome is unknown takes a new attempt (a new message, which may
    then reach consumers twice) only when the operator says so: `as_new_message`."""
    statuses = DeadLetter.OPEN if as_new_message else DeadLetter.RETRYABLE
    with transaction.atomic():
        won = DeadLetter.objects.filter(
            pk=dead_letter_id, attempt=seen_attempt, status__in=statuses, raw__isnull=False,
        ).update(status=DeadLetter.Status.RETRYING, attempt=F("attempt") + 1, status_reason="", updated=timezone.now())
        if won != 1:
            return None
        subject = DeadLetter.objects.values_list("subject", flat=True).get(pk=dead_letter_id)
        return RetryAttempt.objects.create(
            dead_letter_id=dead_letter_id, attempt=seen_attempt + 1, user=user,
            msg_id=msg_id(dead_letter_id, seen_attempt + 1), subject=subject,
            edited_headers=edited_headers, edited_raw=edited_raw,
        )


def claim_recheck(dead_letter_id, seen_attempt):
    """Queue the attempt whose outcome is unknown again, as it was (same Nats-Msg-Id, same
    headers and payload): the worker looks for it and sends it only if absent. Returns the
    attempt, or None when the dead letter is no longer where the page showed it."""
    with transaction.atomic():
        won = DeadLetter.objects.filter(
            pk=dead_letter_id, attempt=seen_attempt, status=DeadLetter.Status.UNKNOWN, raw__isnull=False,
        ).update(status=DeadLetter.Status.RETRYING, status_reason="", updated=timezone.now())
        if won != 1:
            return None
        RetryAttempt.objects.filter(dead_letter_id=dead_letter_id, attempt=seen_attempt).update(
            outcome=RetryAttempt.Outcome.QUEUED, error="", followup=RetryAttempt.FollowUp.PENDING, sender=None)
        return RetryAttempt.objects.get(dead_letter_id=dead_letter_id, attempt=seen_attempt)


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


def release(attempt_id, error):
    """Give back a claim whose task never reached the queue: nothing was sent by it (an
    attempt being checked again stays as unknown as it was)."""
    if RetryAttempt.objects.filter(pk=attempt_id, first_sent_at__isnull=False).exists():
        return write_outcomes([(attempt_id, "unknown", "", None, f"outcome unknown: it was not checked ({error})")],
                              taken_by=None)
    return write_outcomes([(attempt_id, "failed", "", None, error)], taken_by=None)


# --- the worker's take and the outcomes it writes ----------------------------------------


def take(attempt_ids, sender):
    """The worker's own claim: an attempt is sent by the one worker that moves it on
    (queued -> sending, under its sender lock); the same statement loads what is to be sent.
    An attempt left `sending` by a worker that is gone (its lock is free) is taken again at
    once; `maybe_sent` then says it may already be on the stream, and `age` how long ago
    (by the database's clock) its first send began."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE collector_retryattempt r
            SET outcome = 'sending', sent_at = now(), first_sent_at = coalesce(r.first_sent_at, now()), sender = %s
            FROM collector_deadletter d JOIN collector_broker b ON b.id = d.broker_id
            WHERE r.id = ANY(%s) AND d.id = r.dead_letter_id
              AND (r.outcome = 'queued' OR (r.outcome = 'sending' AND r.sender IS DISTINCT FROM %s AND {SENDER_GONE}))
            RETURNING r.id, r.dead_letter_id, r.attempt, r.msg_id, r.subject, r.edited_headers, r.edited_raw,
                      d.headers, d.raw, b.url, b.kind, d.broker_id, d.message_key,
                      (SELECT username FROM auth_user u WHERE u.id = r.user_id),
                      r.first_sent_at < r.sent_at AS maybe_sent, r.first_sent_at,
                      extract(epoch FROM now() - r.first_sent_at)::float8 AS age
            """,
            [sender, list(attempt_ids), sender],
        )
        columns = [c.name for c in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]


def record(attempts, results, sender):
    """Write the outcomes of attempts this worker took (and still holds)."""
    return write_outcomes([(a["id"], *result) for a, result in zip(attempts, results)], taken_by=sender)


def write_outcomes(rows, taken_by):
    """[(attempt id, outcome, stream, seq, error)] onto the attempts and their dead letters:
    landed -> `retried`; failed (certainly not stored) -> `new`, so it can be retried as a
    new attempt; unknown -> `unknown`, for an operator to decide. Only attempts still
    `sending` under `taken_by` change (or, with taken_by None, still `queued`)."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH k AS (SELECT * FROM unnest(%(ids)s::int8[], %(outcomes)s::text[], %(streams)s::text[],
                                            %(seqs)s::int8[], %(errors)s::text[])
                       AS k(id, outcome, stream, seq, error)),
            a AS (
                UPDATE collector_retryattempt r
                SET outcome = k.outcome, stream = k.stream, stream_seq = k.seq, error = k.error,
                    sent_at = CASE WHEN k.outcome = 'failed' THEN NULL ELSE %(now)s END,
                    followup = CASE WHEN k.outcome IN ('failed', 'unknown') THEN 'unknown' ELSE r.followup END
                FROM k WHERE r.id = k.id
                  AND CASE WHEN %(sender)s::int4 IS NULL THEN r.outcome = 'queued'
                           ELSE r.outcome = 'sending' AND r.sender = %(sender)s::int4 END
                RETURNING r.dead_letter_id, k.outcome, k.error
            )
            UPDATE collector_deadletter d
            SET status = CASE a.outcome WHEN 'failed' THEN 'new' WHEN 'unknown' THEN 'unknown' ELSE 'retried' END,
                status_reason = CASE WHEN a.outcome = 'unknown' THEN a.error || '. ' || %(advice)s ELSE a.error END,
                updated = %(now)s
            FROM a WHERE d.id = a.dead_letter_id AND d.status = 'retrying'
            """,
            {"ids": [r[0] for r in rows], "outcomes": [r[1] for r in rows], "streams": [r[2] for r in rows],
             "seqs": [r[3] for r in rows], "errors": [r[4] for r in rows], "now": now, "sender": taken_by,
             "advice": UNKNOWN_ADVICE},
        )
