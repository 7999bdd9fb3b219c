"""Retry exactly once: claims, Celery tasks, provenance, roles, read-only mode, bulk jobs and
the API, against a real JetStream and PostgreSQL. Concurrency and bulk tests run a real
`celery -A dashboard worker` process on the test's Redis; the `test_unit_*` ones run the
tasks eagerly in the test's thread (see tests/deadletters/test_retry_crashes.py for crashes)."""
import threading
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from collector.deadletters import claims
from collector.models import AuditEntry, DeadLetter, RetryAttempt, RetryJob, RuntimeSettings, Topic
from dashboard.deadletters import tasks as tasks_dlq
from tests.conftest import wait_until
from tests.deadletters.conftest import letter, make_stream, stream_messages, unique

pytestmark = pytest.mark.django_db(transaction=True)


# --- retry -----------------------------------------------------------------------------


@pytest.fixture
def orders(broker, nats_url):
    """A stream for the original subject and a dead letter from it."""
    stream = unique("RTY")
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    return stream, subject, letter(broker, subject, headers={"X-Customer": "7", "Nats-Msg-Id": "original-1"})


def test_unit_retry_republishes_once_with_provenance_and_audit(operator_client, eager_tasks, orders, nats_url):
    """Unit test (Celery eager): the message goes back to its subject with a dedup key from
    the dead letter and attempt, and provenance headers."""
    stream, subject, found = orders
    response = operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"})
    assert response.status_code == 302
    [sent] = stream_messages(nats_url, stream)
    assert sent.subject == subject and sent.data == b'{"order": 1}'
    assert sent.headers["Nats-Msg-Id"] == f"eventscope-retry-{found.id}-1"
    assert sent.headers["Eventscope-Retry-Of"] == str(found.id)
    assert sent.headers["Eventscope-Attempt"] == "1" and sent.headers["Eventscope-Retried-By"] == "bob"
    assert sent.headers["X-Customer"] == "7"
    found.refresh_from_db()
    assert (found.status, found.attempt) == ("retried", 1)
    attempt = RetryAttempt.objects.get(dead_letter=found)
    assert (attempt.outcome, attempt.stream, attempt.stream_seq) == ("sent", stream, 1)
    entry = AuditEntry.objects.get(action="dlq.retry")
    assert entry.user.username == "bob" and entry.result.startswith(f"republished to {subject}")


def test_several_threads_posting_the_same_retry_send_one_message(bob, celery_worker_process, orders, nats_url):
    """Double clicks and two tabs: eight simultaneous POSTs of the same form, one message
    (sent by a real worker process)."""
    from django.db import connection

    stream, subject, found = orders
    celery_worker_process(concurrency=2)
    barrier = threading.Barrier(8)
    statuses = []

    def click():
        client = Client()
        client.force_login(bob)
        barrier.wait()
        statuses.append(client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"}).status_code)
        connection.close()

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [302] * 8
    wait_until(lambda: DeadLetter.objects.get(pk=found.id).status == "retried", 30, "the worker")
    assert len(stream_messages(nats_url, stream)) == 1
    assert RetryAttempt.objects.filter(dead_letter=found).count() == 1
    assert AuditEntry.objects.filter(action="dlq.retry", result__startswith="refused").count() == 7


def test_unit_a_resubmitted_form_sends_nothing_but_a_deliberate_new_retry_does(operator_client, eager_tasks,
                                                                              orders, nats_url):
    """Unit test (Celery eager): the claim refuses a form rendered before the last retry."""
    stream, subject, found = orders
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"})
    again = operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"}, follow=True)
    assert b"Someone else already retried" in again.content
    assert len(stream_messages(nats_url, stream)) == 1
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "1"})
    messages = stream_messages(nats_url, stream)
    assert [m.headers["Eventscope-Attempt"] for m in messages] == ["1", "2"]


def test_two_workers_sending_the_same_attempt_produce_one_message(bob, orders, nats_url, celery_worker_process):
    """The same task delivered twice, to two prefork children at once: one sends, the other
    finds the attempt taken."""
    stream, subject, found = orders
    attempt = claims.claim(found.id, 0, bob)
    entry = AuditEntry.objects.create(user=bob, action="dlq.retry", target=f"dead letter {found.id}")
    celery_worker_process(concurrency=2)
    results = [tasks_dlq.retry_dead_letter.delay(attempt.id, entry.id) for _ in range(2)]
    outcomes = sorted(result.get(timeout=30) for result in results)
    assert outcomes[0].startswith(f"republished to {subject}") and outcomes[1] == "taken by another worker"
    assert len(stream_messages(nats_url, stream)) == 1
    assert RetryAttempt.objects.get(pk=attempt.id).outcome == "sent"


def test_unit_a_retry_while_the_broker_is_down_leaves_it_retryable_with_the_error(operator_client, eager_tasks,
                                                                                 orders, broker, nats_url):
    """Unit test (Celery eager): nothing could be sent, so a new attempt may go later."""
    stream, subject, found = orders
    broker.url = "nats://127.0.0.1:1"
    broker.save()
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"})
    found.refresh_from_db()
    assert found.status == "new" and "broker unreachable" in found.status_reason
    page = operator_client.get(f"/dlq/{found.id}/").content.decode()
    assert "broker unreachable" in page and 'id="retry"' in page
    assert "failed" in AuditEntry.objects.get(action="dlq.retry").result
    broker.url = nats_url
    broker.save()
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": str(found.attempt)})
    found.refresh_from_db()
    assert found.status == "retried" and len(stream_messages(nats_url, stream)) == 1


def test_unit_a_retry_to_a_subject_no_stream_captures_fails_clearly(operator_client, eager_tasks, broker):
    """Unit test (Celery eager)."""
    found = letter(broker, unique("gone.").lower() + ".subject")
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"})
    found.refresh_from_db()
    assert found.status == "new"
    assert "no stream captures" in found.status_reason and "nothing was sent" in found.status_reason


def test_unit_an_admin_edits_payload_and_headers_then_retries(admin_client_, operator_client, eager_tasks, orders,
                                                            nats_url, alice):
    """Unit test (Celery eager)."""
    stream, subject, found = orders
    edited = {"attempt": "0", "edit": "1", "headers": "X-Customer: 8", "payload": '{"order": 2}'}
    assert operator_client.post(f"/dlq/{found.id}/retry/", edited).status_code == 403
    admin_client_.force_login(alice)
    assert admin_client_.post(f"/dlq/{found.id}/retry/", edited).status_code == 302
    [sent] = stream_messages(nats_url, stream)
    assert sent.data == b'{"order": 2}' and sent.headers["X-Customer"] == "8"
    assert sent.headers["Eventscope-Retried-By"] == "alice"


@pytest.mark.parametrize("typed", ["Nats-Msg-Id: mine-1", "eventscope-retry-of: 12", "Eventscope-Retried-By: eve"])
def test_typed_dedup_or_eventscope_headers_are_refused_in_the_edit_and_retry_form(admin_client_, orders, typed):
    """Nats-Msg-Id and Eventscope-* are set by Eventscope only: an edit that types one is
    refused with the reason, and nothing is claimed."""
    stream, subject, found = orders
    page = admin_client_.get(f"/dlq/{found.id}/").content.decode()
    assert "Nats-Msg-Id" not in page.split('id="edit-headers"')[1].split("</textarea>")[0]
    response = admin_client_.post(f"/dlq/{found.id}/retry/", {
        "attempt": "0", "edit": "1", "headers": f"X-Customer: 8\n{typed}", "payload": "{}"}, follow=True)
    assert f"Not retried: header line 2: {typed.split(':')[0]} is set by Eventscope only" in response.content.decode()
    found.refresh_from_db()
    assert (found.status, found.attempt) == ("new", 0) and not RetryAttempt.objects.exists()


def test_a_viewer_sees_no_buttons_and_every_action_is_refused(viewer_client, orders):
    stream, subject, found = orders
    page = viewer_client.get(f"/dlq/{found.id}/").content.decode()
    assert 'id="retry"' not in page and "Discard" not in page
    assert 'name="pick"' not in viewer_client.get("/dlq/").content.decode()
    for path in (f"/dlq/{found.id}/retry/", f"/dlq/{found.id}/discard/", f"/dlq/{found.id}/resolve/", "/dlq/retry/",
                 f"/api/dlq/{found.id}/retry"):
        assert viewer_client.post(path, {"attempt": "0", "reason": "x", "pick": f"{found.id}:0"}).status_code == 403
    assert viewer_client.get(f"/dlq/{found.id}/retry/").status_code == 405
    found.refresh_from_db()
    assert found.status == "new" and found.attempt == 0


def test_read_only_mode_turns_every_action_off(operator_client, orders):
    stream, subject, found = orders
    runtime = RuntimeSettings.load()
    runtime.read_only = True
    runtime.save()
    assert 'id="retry"' not in operator_client.get(f"/dlq/{found.id}/").content.decode()
    assert operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"}).status_code == 403
    assert operator_client.post(f"/dlq/{found.id}/discard/", {"reason": "x"}).status_code == 403


def test_a_retry_post_without_its_csrf_token_is_refused(bob, orders):
    stream, subject, found = orders
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"}).status_code == 403
    found.refresh_from_db()
    assert found.attempt == 0


def test_discard_and_resolve_need_a_reason_and_are_audited(operator_client, broker):
    first, second = letter(broker, "a.b"), letter(broker, "a.c")
    operator_client.post(f"/dlq/{first.id}/discard/", {"reason": ""})
    first.refresh_from_db()
    assert first.status == "new"
    operator_client.post(f"/dlq/{first.id}/discard/", {"reason": "test data"})
    operator_client.post(f"/dlq/{second.id}/resolve/", {"reason": "fixed by hand"})
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.status_reason) == ("discarded", "test data")
    assert second.status == "resolved"
    assert operator_client.post(f"/dlq/{first.id}/retry/", {"attempt": "0"}, follow=True).status_code == 200
    assert RetryAttempt.objects.count() == 0
    audit = operator_client.get("/audit/?action=dlq.discard").content.decode()
    assert f"dead letter {first.id}" in audit and f"dead letter {second.id}" not in audit
    assert "fixed by hand" in str(AuditEntry.objects.get(action="dlq.resolve").detail)


def test_bulk_retry_of_a_selection_and_of_a_filter_with_a_dry_run(operator_client, celery_worker_process, orders,
                                                                 broker, nats_url):
    """Bulk jobs run in a real worker process."""
    stream, subject, found = orders
    celery_worker_process()
    more = [letter(broker, subject, raw=f'{{"n": {n}}}'.encode(), consumer="billing") for n in range(5)]
    Topic.objects.create(broker=broker, name=subject, stream=stream, first_seen=timezone.now(),
                         last_seen=timezone.now())  # as the collector records it
    window = {"from": (timezone.now() - timedelta(hours=1)).isoformat(), "to": (timezone.now() + timedelta(minutes=1)).isoformat()}
    dry = operator_client.post("/dlq/retry/", {"scope": "filter", "consumer": "billing", "dry_run": "1", **window})
    assert b"A retry would send <strong>5</strong>" in dry.content and stream.encode() in dry.content
    assert stream_messages(nats_url, stream) == []
    picked = operator_client.post("/dlq/retry/", {"scope": "picked", "pick": [f"{more[0].id}:0", f"{found.id}:0"]})
    job = RetryJob.objects.get()
    assert picked["Location"] == f"/dlq/jobs/{job.id}/"
    wait_until(lambda: RetryJob.objects.get(pk=job.id).state == "done", 30, "the job")
    progress = operator_client.get(f"/api/dlq/jobs/{job.id}").json()
    assert (progress["state"], progress["sent"], progress["percent"]) == ("done", 2, 100)
    assert 'value="100"' in operator_client.get(f"/dlq/jobs/{job.id}/").content.decode()  # the progress bar
    rest = operator_client.post("/dlq/retry/", {"scope": "filter", "consumer": "billing", **window})
    job = RetryJob.objects.get(pk=int(rest["Location"].rstrip("/").split("/")[-1]))
    job = wait_until(lambda: RetryJob.objects.filter(pk=job.id, state="done").first(), 30, "the job")
    assert (job.state, job.total, job.sent) == ("done", 4, 4)
    assert len(stream_messages(nats_url, stream)) == 6
    assert "4 republished" in AuditEntry.objects.filter(action="dlq.bulk_retry").order_by("-id")[0].result


def test_unit_the_api_retry_takes_the_same_claim_and_says_409_to_a_stale_attempt(operator_client, eager_tasks,
                                                                               orders, nats_url):
    """Unit test (Celery eager)."""
    stream, subject, found = orders
    first = operator_client.post(f"/api/dlq/{found.id}/retry", {"attempt": "0"})
    assert first.status_code == 202 and first.json()["msg_id"] == f"eventscope-retry-{found.id}-1"
    assert operator_client.post(f"/api/dlq/{found.id}/retry", {"attempt": "0"}).status_code == 409
    detail = operator_client.get(f"/api/dlq/{found.id}").json()
    assert detail["status"] == "retried" and [r["outcome"] for r in detail["retries"]] == ["sent"]
    assert len(stream_messages(nats_url, stream)) == 1


def test_the_api_retry_refuses_headers_since_eventscope_alone_sets_them(operator_client, orders):
    stream, subject, found = orders
    for extra in ({"Nats-Msg-Id": "mine-1"}, {"Eventscope-Retried-By": "eve"}, {"headers": "X-A: 1"}):
        response = operator_client.post(f"/api/dlq/{found.id}/retry", {"attempt": "0", **extra})
        assert response.status_code == 400 and "set by Eventscope only" in response.json()["error"]
    found.refresh_from_db()
    assert (found.status, found.attempt) == ("new", 0)
