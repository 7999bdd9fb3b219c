"""Exactly once through crashes: a real `celery -A dashboard worker` process is killed
(one prefork child with SIGKILL, or the whole worker) after it has published a retry and
before it has recorded it, on real streams with a short duplicate window. The end is one
message on the stream, or "outcome unknown" shown for an operator to decide; never two.

The worker stops at the right moment through a fault point (EVENTSCOPE_FAULT, read only
when set): the first process to publish writes its pid to a file and waits to be killed."""
import os
import signal
import threading

import pytest
from django.db import connection
from nats.js import api

from collector.deadletters.claims import SENDER_LOCK
from collector.models import DeadLetter, RetryAttempt, RetryJob
from tests.conftest import wait_until
from tests.deadletters.conftest import failing_consumer, letter, make_stream, stream_messages, stream_state, unique

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fault(tmp_path):
    """(env for the worker, a function that waits for the stopped process and returns its pid)."""
    path = tmp_path / "fault"

    def stopped():
        return int(wait_until(lambda: path.exists() and path.read_text().strip(), 30, "the worker to publish"))

    return {"EVENTSCOPE_FAULT": f"retry-published:{path}"}, stopped, path


def a_dead_letter(broker, nats_url, **stream_config):
    stream = unique("CRASH")
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"], **stream_config)
    return stream, letter(broker, subject)


def retry(client, found):
    assert client.post(f"/dlq/{found.id}/retry/", {"attempt": str(found.attempt)}).status_code == 302


def settled(found, timeout=30):
    return wait_until(lambda: DeadLetter.objects.exclude(status="retrying").filter(pk=found.pk).first(), timeout,
                      "the retry to settle")


def test_a_prefork_child_killed_after_publishing_is_run_again_at_once_and_jetstream_drops_the_copy(
        operator_client, broker, nats_url, celery_worker_process, fault):
    """Within the duplicate window the redelivered task sends the same Nats-Msg-Id again."""
    env, stopped, _ = fault
    stream, found = a_dead_letter(broker, nats_url, duplicate_window=30.0)
    celery_worker_process(env=env)
    retry(operator_client, found)
    child = stopped()
    assert len(stream_messages(nats_url, stream)) == 1  # published, not yet recorded
    os.kill(child, signal.SIGKILL)
    assert settled(found).status == "retried"
    attempt = RetryAttempt.objects.get(dead_letter=found)
    assert attempt.outcome == "duplicate" and attempt.stream_seq == 1
    assert len(stream_messages(nats_url, stream)) == 1


def test_a_child_killed_past_the_duplicate_window_is_found_on_a_limits_stream_and_not_sent_again(
        operator_client, broker, nats_url, celery_worker_process, fault):
    env, stopped, _ = fault
    stream, found = a_dead_letter(broker, nats_url, duplicate_window=2.0)
    celery_worker_process(env=env)
    retry(operator_client, found)
    child = stopped()
    threading.Event().wait(2.5)  # the duplicate window passes: Nats-Msg-Id no longer protects
    os.kill(child, signal.SIGKILL)
    assert settled(found).status == "retried"
    attempt = RetryAttempt.objects.get(dead_letter=found)
    assert (attempt.outcome, attempt.stream_seq) == ("found", 1)
    assert len(stream_messages(nats_url, stream)) == 1
    page = operator_client.get(f"/dlq/{found.id}/").content.decode()
    assert "already on the stream" in page


def test_a_whole_worker_killed_is_redelivered_after_the_visibility_timeout_and_finds_its_message(
        operator_client, broker, nats_url, celery_worker_process, fault):
    env, stopped, _ = fault
    env = {**env, "CELERY_VISIBILITY_TIMEOUT": "3"}
    stream, found = a_dead_letter(broker, nats_url, duplicate_window=2.0)
    first = celery_worker_process(env=env)
    retry(operator_client, found)
    stopped()
    first.kill()  # the main process and its children: nothing acknowledges the task
    celery_worker_process(env=env)
    assert settled(found, 40).status == "retried"
    assert RetryAttempt.objects.get(dead_letter=found).outcome == "found"
    assert len(stream_messages(nats_url, stream)) == 1


@pytest.mark.parametrize("retention", [api.RetentionPolicy.INTEREST, api.RetentionPolicy.WORK_QUEUE])
def test_past_the_window_on_a_stream_that_deletes_consumed_messages_the_outcome_is_unknown_for_an_operator(
        operator_client, broker, nats_url, celery_worker_process, fault, retention):
    """The consumer took (and so deleted) the message: nobody can tell whether it was sent,
    so nothing is sent again until an operator decides."""
    env, stopped, _ = fault
    stream, found = a_dead_letter(broker, nats_url, duplicate_window=2.0, retention=retention)
    consumed = threading.Event()
    consumed.set()
    thread, stop = failing_consumer(nats_url, stream, found.subject, "billing", until=consumed)
    try:
        celery_worker_process(env=env)
        retry(operator_client, found)
        child = stopped()
        wait_until(lambda: stream_state(nats_url, stream).messages == 0, 10, "the consumer to take it")
        threading.Event().wait(2.5)
        os.kill(child, signal.SIGKILL)
        assert settled(found).status == "unknown"
    finally:
        stop.set()
    assert stream_state(nats_url, stream).last_seq == 1  # stored once, never again
    attempt = RetryAttempt.objects.get(dead_letter=found)
    assert attempt.outcome == "unknown" and "consumed" in attempt.error
    page = operator_client.get(f"/dlq/{found.id}/").content.decode()
    assert "outcome unknown" in page and 'id="check-again"' in page and 'id="send-new"' in page
    assert 'id="retry"' not in page and "data-refresh" not in page


def test_a_publish_without_acknowledgement_is_looked_for_before_anything_is_sent_again(
        operator_client, broker, nats_url, celery_worker_process):
    """A stream that stores without acknowledging: the publish times out, the message is
    there. Past the window it is found, not sent under a new Nats-Msg-Id."""
    stream, found = a_dead_letter(broker, nats_url, duplicate_window=2.0, no_ack=True)
    celery_worker_process()
    retry(operator_client, found)
    assert settled(found).status == "retried"
    attempt = RetryAttempt.objects.get(dead_letter=found)
    assert (attempt.outcome, attempt.stream_seq) == ("found", 1)
    assert len(stream_messages(nats_url, stream)) == 1


def test_a_database_error_while_recording_reruns_the_task_and_still_sends_once(
        operator_client, broker, nats_url, celery_worker_process, fault):
    """The worker's database connection is cut after it published: `record()` fails, the
    task runs again, finds its attempt unheld, and JetStream drops the resend."""
    env, stopped, path = fault
    stream, found = a_dead_letter(broker, nats_url)
    celery_worker_process(env=env)
    retry(operator_client, found)
    stopped()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
                       [SENDER_LOCK])
        assert cursor.rowcount == 1
    path.write_text("go")  # the worker goes on, into a record() that fails
    assert settled(found).status == "retried"
    assert RetryAttempt.objects.get(dead_letter=found).outcome == "duplicate"
    assert len(stream_messages(nats_url, stream)) == 1


def test_a_bulk_job_whose_worker_died_resumes_when_redelivered_and_sends_each_message_once(
        operator_client, broker, nats_url, celery_worker_process, fault):
    env, stopped, _ = fault
    stream, first = a_dead_letter(broker, nats_url)
    letters = [first] + [letter(broker, first.subject, raw=f'{{"n": {n}}}'.encode()) for n in range(3)]
    celery_worker_process(env=env)
    response = operator_client.post("/dlq/retry/", {"scope": "picked", "pick": [f"{d.id}:0" for d in letters]})
    job = RetryJob.objects.get()
    assert response["Location"] == f"/dlq/jobs/{job.id}/"
    os.kill(stopped(), signal.SIGKILL)
    job = wait_until(lambda: RetryJob.objects.filter(pk=job.id, state="done").first(), 30, "the job to finish")
    assert (job.sent, job.skipped, job.failed, job.unknown) == (4, 0, 0, 0)
    assert len(stream_messages(nats_url, stream)) == 4
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"retried"}
    assert "data-refresh" not in operator_client.get(f"/dlq/jobs/{job.id}/").content.decode()
