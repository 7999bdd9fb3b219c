"""No dead letter stays `retrying` for good: a claim whose task cannot be queued is given
back at once; claims nobody holds any more (the task lost, the worker gone, a bulk job's
runner gone) are settled by the collector's follow-up loop; no page reloads forever."""
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from collector.deadletters import claims
from collector.models import AuditEntry, DeadLetter, RetryAttempt, RetryJob
from tests.conftest import wait_until
from tests.deadletters.conftest import letter, make_stream, stream_messages, unique

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def orders(broker, nats_url):
    stream = unique("STUCK")
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    return stream, subject


@pytest.fixture
def task_queue_down():
    """The web side's Celery app pointed at a Redis that is not running."""
    from dashboard.celery import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    running = app.conf.broker_url

    def point(url):
        app.conf.broker_url = url
        app._after_fork()  # drop the connection pools made for the old URL

    point(f"redis://127.0.0.1:{closed}/0")
    yield
    point(running)


def test_a_retry_that_cannot_be_queued_gives_its_claim_back_and_says_why(operator_client, broker, orders,
                                                                        task_queue_down):
    stream, subject = orders
    found = letter(broker, subject)
    page = operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"}, follow=True).content.decode()
    assert "Not retried: not queued: the task queue is unreachable" in page and "nothing was sent" in page
    found.refresh_from_db()
    assert found.status == "new" and "task queue is unreachable" in found.status_reason
    assert RetryAttempt.objects.get(dead_letter=found).outcome == "failed"
    assert AuditEntry.objects.get(action="dlq.retry").result.startswith("failed: not queued")
    assert 'id="retry"' in page and "data-refresh" not in page

    api = operator_client.post(f"/api/dlq/{found.id}/retry", {"attempt": "1"})
    assert api.status_code == 503 and "task queue is unreachable" in api.json()["error"]
    found.refresh_from_db()
    assert (found.status, found.attempt) == ("new", 2)

    job_page = operator_client.post("/dlq/retry/", {"scope": "picked", "pick": [f"{found.id}:2"]}, follow=True)
    job = RetryJob.objects.get()
    assert job.state == "failed" and "task queue is unreachable" in job.error
    assert "data-refresh" not in job_page.content.decode()
    found.refresh_from_db()
    assert found.status == "new"


def _worker_connection(attempt_id, keep=None):
    """What a worker does with its own database session: hold a sender lock and take the
    attempt; then either die (its session ends, as when the process is killed) or, with
    `keep`, stay alive until `keep` is set."""
    taken = threading.Event()

    def work():
        key = claims.hold_sender_lock()
        claims.take([attempt_id], key)
        taken.set()
        if keep is not None:
            keep.wait(30)
            claims.release_sender_lock(key)
        connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    taken.wait(10)
    return thread


def test_the_collector_settles_claims_nobody_holds_and_pages_stop_reloading(
        operator_client, bob, broker, orders, settings, collector, celery_worker_process, nats_url):
    stream, subject = orders
    settings.RETRY_STALE_SECONDS = 1
    never_taken, gone, held = (letter(broker, subject) for _ in range(3))
    claims.claim(never_taken.id, 0, bob)  # its task was lost
    _worker_connection(claims.claim(gone.id, 0, bob).id).join()  # taken by a worker that then died
    alive = threading.Event()
    holder = _worker_connection(claims.claim(held.id, 0, bob).id, keep=alive)  # a worker still sending
    job = RetryJob.objects.create(user=bob, selection={"ids": {}}, state="running")
    try:
        wait_until(lambda: DeadLetter.objects.get(pk=never_taken.id).status == "new", 15, "the sweep")
        wait_until(lambda: DeadLetter.objects.get(pk=gone.id).status == "unknown", 5, "the sweep")
        wait_until(lambda: RetryJob.objects.get(pk=job.id).state == "stalled", 5, "the sweep")
        assert DeadLetter.objects.get(pk=held.id).status == "retrying"
        assert RetryAttempt.objects.get(dead_letter=held).outcome == "sending"
    finally:
        alive.set()
        holder.join()

    page = operator_client.get(f"/dlq/{never_taken.id}/").content.decode()
    assert "no worker took this retry" in page and "nothing was sent" in page and 'id="retry"' in page
    assert "data-refresh" not in page
    page = operator_client.get(f"/dlq/{gone.id}/").content.decode()
    assert "outcome unknown" in page and 'id="check-again"' in page and "data-refresh" not in page
    page = operator_client.get(f"/dlq/jobs/{job.id}/").content.decode()
    assert "stalled" in page and "data-refresh" not in page

    # The next retry of the unknown one follows the rule: (within the window) the same
    # Nats-Msg-Id again, so had the dead worker's copy landed, JetStream would keep one.
    celery_worker_process()
    operator_client.post(f"/dlq/{gone.id}/retry/", {"attempt": "1", "recheck": "1"})
    wait_until(lambda: DeadLetter.objects.get(pk=gone.id).status == "retried", 30, "the check")
    [sent] = stream_messages(nats_url, stream)
    assert sent.headers["Nats-Msg-Id"] == f"eventscope-retry-{gone.id}-1"
    assert RetryAttempt.objects.filter(dead_letter=gone).count() == 1


def test_a_page_never_reloads_on_a_claim_nobody_has_moved_even_without_a_collector(operator_client, bob, broker,
                                                                                  orders, settings):
    stream, subject = orders
    settings.RETRY_STALE_SECONDS = 1
    found = letter(broker, subject)
    claims.claim(found.id, 0, bob)
    assert "data-refresh" in operator_client.get(f"/dlq/{found.id}/").content.decode()
    DeadLetter.objects.filter(pk=found.id).update(updated=timezone.now() - timedelta(seconds=2))
    page = operator_client.get(f"/dlq/{found.id}/").content.decode()
    assert 'id="stalled"' in page and "data-refresh" not in page
