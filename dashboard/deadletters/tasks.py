"""Retrying dead letters: the Celery tasks that republish what the web side claimed; and the
delivery of dead-letter alerts, which the collector queues by task name.

Exactly once, through crashes. Claims and outcomes are in `collector.deadletters.claims`;
how an attempt that may already be on the stream is settled is in `publisher`. A task is
acknowledged only when it has finished, and one whose worker died is delivered again
(settings: `task_acks_late`, `task_reject_on_worker_lost`, the Redis visibility timeout).
The redelivered task finds the attempt `sending` under a lock nobody holds any more, so it
takes it at once and settles it by the rule in `publisher`: within the duplicate window the
same `Nats-Msg-Id` again; past it, looked for on the stream; else "outcome unknown".
A database error while recording (after the message went out) reruns the task the same way.
"""
import json
import os
import time

from django.db import InterfaceError, OperationalError
from django.db.models import Count, F, Q
from django.utils import timezone

from collector.deadletters import claims
from collector.deadletters.rules import RETRIED_BY, RETRY_ATTEMPT, RETRY_OF
from collector.models import AuditEntry, DeadLetterSettings, RetryAttempt, RetryJob

# Tasks bound to the project's app (not `shared_task`), so `.delay()` reaches its broker from
# whichever process enqueues: the web side included.
from dashboard.celery import app
from dashboard.deadletters.kafka_publisher import KafkaPublisher, look_in_store
from dashboard.deadletters.publisher import Message, Publisher

CHUNK = 500
# Headers of the dead message that must not travel with the retry: the old dedup key and
# publish expectations would make JetStream drop or refuse it; provenance is set afresh.
DROPPED_HEADERS = ("nats-msg-id", "nats-expected-", "eventscope-")
# Errors after which a rerun of the task can finish the job: the database went away.
TRANSIENT = (OperationalError, InterfaceError)
RERUN = {"autoretry_for": TRANSIENT, "retry_backoff": 1, "retry_backoff_max": 60, "max_retries": 20}


# --- sending (worker side) --------------------------------------------------------------

def send_attempts(attempt_ids, retried_by, publisher=None):
    """Republish the queued attempts among `attempt_ids` (and any left `sending` by a worker
    that is gone) and record each outcome. Returns {outcome: count}."""
    if not attempt_ids:
        return {}
    sender = claims.hold_sender_lock()
    own = publisher is None
    publisher = publisher or Publisher()
    kafka = KafkaPublisher()
    outcomes = {}
    try:
        mine = claims.take(attempt_ids, sender)
        took = time.monotonic()
        by_broker = {}
        for attempt in mine:
            by_broker.setdefault(attempt["url"], []).append(attempt)
        for url, group in by_broker.items():
            if group[0]["kind"] == "kafka":
                ordered = _send_to_kafka(url, group, retried_by, kafka)
                claims.record(group, ordered, sender)
                for outcome, *_ in ordered:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                continue
            results = {}
            again = [a for a in group if a["maybe_sent"]]
            fresh = [a for a in group if not a["maybe_sent"]]
            if fresh:
                for attempt, result in zip(fresh, publisher.publish(url, [_message(a, retried_by) for a in fresh])):
                    if result[0] == "uncertain":  # no acknowledgement: it may be stored
                        again.append(attempt)
                    else:
                        results[attempt["id"]] = result
            fault_point("retry-published")
            if again:
                for attempt in again:
                    attempt["age"] = (attempt["age"] or 0.0) + time.monotonic() - took
                for attempt, result in zip(again, publisher.settle(url, [_message(a, retried_by) for a in again])):
                    results[attempt["id"]] = result
            ordered = [results[a["id"]] for a in group]
            claims.record(group, ordered, sender)
            for outcome, *_ in ordered:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        if own:
            publisher.close()
        kafka.close()
        claims.release_sender_lock(sender)
    return outcomes


def _send_to_kafka(url, group, retried_by, kafka):
    """Kafka has no dedup key: first sends go out; an attempt that may already be out is
    looked for in what the tap stored, never sent again (see kafka_publisher)."""
    results = {}
    fresh = [a for a in group if not a["maybe_sent"]]
    maybe = [a for a in group if a["maybe_sent"]]
    if fresh:
        messages = [(a["subject"], a["message_key"], _kafka_headers(a, retried_by), _raw(a)) for a in fresh]
        for attempt, result in zip(fresh, kafka.publish(url, messages)):
            if result[0] == "uncertain":
                maybe.append(attempt)
            else:
                results[attempt["id"]] = result
    fault_point("retry-published")
    if maybe:
        results.update(look_in_store(group[0]["broker_id"], maybe))
    return [results[a["id"]] for a in group]


def _kafka_headers(attempt, retried_by):
    headers = headers_for(attempt, retried_by)
    headers.pop("Nats-Msg-Id", None)
    return headers


def _raw(attempt):
    return bytes(attempt["edited_raw"] if attempt["edited_raw"] is not None else attempt["raw"])


def headers_for(attempt, retried_by):
    """The dead message's headers (or an admin's edit) with fresh provenance and dedup key."""
    base = attempt["edited_headers"] if attempt["edited_headers"] is not None else attempt["headers"]
    if isinstance(base, str):
        base = json.loads(base)  # Django's cursor hands jsonb over as text
    headers = {k: v for k, v in (base or {}).items() if not k.lower().startswith(DROPPED_HEADERS)}
    headers.update({"Nats-Msg-Id": attempt["msg_id"], RETRY_OF: str(attempt["dead_letter_id"]),
                    RETRY_ATTEMPT: str(attempt["attempt"]), RETRIED_BY: attempt["username"] or retried_by or ""})
    return headers


def _message(attempt, retried_by):
    raw = attempt["edited_raw"] if attempt["edited_raw"] is not None else attempt["raw"]
    return Message(subject=attempt["subject"], headers=headers_for(attempt, retried_by), data=bytes(raw),
                   retry_of=str(attempt["dead_letter_id"]), attempt=str(attempt["attempt"]),
                   since=attempt["first_sent_at"], age=attempt["age"] or 0.0)


def fault_point(name):
    """For crash tests only: with EVENTSCOPE_FAULT=<name>:<file>, the first process to get
    here creates <file>, writes its pid into it and waits (for the test to kill it, or to
    write "go" into the file to let it go on). Without the variable this does nothing."""
    point, _, path = os.environ.get("EVENTSCOPE_FAULT", "").partition(":")
    if point != name or not path:
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # fired once already
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(path) as told:
            if "go" in told.read():
                return
        time.sleep(0.05)


# --- tasks -----------------------------------------------------------------------------


@app.task(name="eventscope.retry_dead_letter", **RERUN)
def retry_dead_letter(attempt_id, audit_id):
    """Republish one claimed retry and put the outcome in its audit entry."""
    entry = AuditEntry.objects.select_related("user").get(pk=audit_id)
    outcomes = send_attempts([attempt_id], entry.user.get_username() if entry.user else "")
    attempt = RetryAttempt.objects.get(pk=attempt_id)
    if not outcomes:  # this run sent nothing: another one has (or had) the attempt
        result = "taken by another worker"
    elif attempt.outcome in (RetryAttempt.Outcome.FAILED, RetryAttempt.Outcome.UNKNOWN):
        result = f"{attempt.outcome}: {attempt.error}"
    else:
        result = f"{attempt.get_outcome_display()} to {attempt.subject}: stream {attempt.stream} sequence {attempt.stream_seq}"
    if outcomes or not entry.result:
        entry.result = result[:500]
        entry.save(update_fields=["result"])
    return result


@app.task(name="eventscope.run_retry_job", **RERUN)
def run_retry_job(job_id, audit_id):
    """A bulk retry: claim and republish in chunks at most `bulk_rate` messages a second,
    keeping the job's counters current for the progress bar. The runner holds the job's
    lock: a second delivery while it runs does nothing, and a delivery after its worker
    died resumes the job where it stopped."""
    if not claims.try_job_lock(job_id):
        return "running in another worker"
    try:
        return _run_job(job_id, audit_id)
    finally:
        claims.release_job_lock(job_id)


def _run_job(job_id, audit_id):
    from collector.deadletters import readers as dlq_readers

    job = RetryJob.objects.select_related("user").get(pk=job_id)
    if job.state not in RetryJob.RESUMABLE:
        return "already run"
    resumed = job.state != RetryJob.State.QUEUED
    # A resumed job counts what it skips afresh: it walks the whole selection again.
    RetryJob.objects.filter(pk=job_id).update(state=RetryJob.State.RUNNING, error="", heartbeat=timezone.now(),
                                              **({"skipped": 0} if resumed else {}))
    rate = max(DeadLetterSettings.load().bulk_rate, 1)
    who = job.user.get_username() if job.user else ""
    publisher = Publisher()
    try:
        if resumed:  # what the runner that died had claimed but not settled
            stranded = list(RetryAttempt.objects.filter(
                job_id=job_id, outcome__in=[RetryAttempt.Outcome.QUEUED, RetryAttempt.Outcome.SENDING])
                .values_list("id", flat=True))
            for index in range(0, len(stranded), CHUNK):
                send_attempts(stranded[index:index + CHUNK], who, publisher)
            _count(job_id)
        for seen in dlq_readers.job_chunks(job.selection, CHUNK):
            started = time.monotonic()
            done = set(RetryAttempt.objects.filter(job_id=job_id, dead_letter_id__in=[int(i) for i in seen])
                       .values_list("dead_letter_id", flat=True))
            seen = {ident: attempt for ident, attempt in seen.items() if int(ident) not in done}
            attempt_ids = claims.claim_many(seen, job.user, job)
            send_attempts(attempt_ids, who, publisher)
            _count(job_id, skipped=len(seen) - len(attempt_ids))
            # The rate limit: a chunk of n messages takes at least n / rate seconds.
            pause = len(seen) / rate - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
    except TRANSIENT:
        raise  # the task runs again and resumes
    except Exception as error:
        RetryJob.objects.filter(pk=job_id).update(state=RetryJob.State.FAILED, error=str(error)[:500],
                                                  finished=timezone.now())
        AuditEntry.objects.filter(pk=audit_id).update(result=f"failed: {error}"[:500])
        raise
    finally:
        publisher.close()
    _count(job_id)
    RetryJob.objects.filter(pk=job_id).update(state=RetryJob.State.DONE, finished=timezone.now())
    job.refresh_from_db()
    result = f"{job.sent} republished, {job.skipped} skipped (changed meanwhile), {job.failed} failed"
    if job.unknown:
        result += f", {job.unknown} outcome unknown"
    AuditEntry.objects.filter(pk=audit_id).update(result=result)
    return result


def _count(job_id, skipped=0):
    """The job's counters from its attempts (so a resumed job never counts twice)."""
    counts = RetryAttempt.objects.filter(job_id=job_id).aggregate(
        sent=Count("id", filter=Q(outcome__in=RetryAttempt.LANDED)),
        failed=Count("id", filter=Q(outcome=RetryAttempt.Outcome.FAILED)),
        unknown=Count("id", filter=Q(outcome=RetryAttempt.Outcome.UNKNOWN)))
    RetryJob.objects.filter(pk=job_id).update(**counts, skipped=F("skipped") + skipped, heartbeat=timezone.now())


@app.task(name="eventscope.send_alert")
def send_alert(alert_id):
    """Post one recorded dead-letter alert to its webhook (queued by the collector, which
    sends tasks by this name only); a second delivery of the task posts nothing."""
    from collector.deadletters.alerts import deliver

    return deliver(alert_id)
