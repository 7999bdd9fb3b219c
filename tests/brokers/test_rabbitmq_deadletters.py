"""RabbitMQ dead letters: copies taken from the dead-letter exchange (the application's
DLQ untouched), read from x-death; a retry to the original exchange and routing key with
publisher confirms, one message however often it is clicked; after a worker crash one
message or "outcome unknown", never two."""
import os
import signal
import threading

import pytest
from django.db import connection
from django.test import Client

from collector.models import DeadLetter, RetryAttempt
from tests.brokers.rabbit import queue_depth, take_all
from tests.conftest import run_async, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_dead_lettered_message_is_captured_from_x_death_and_the_dlq_left_alone(bounced):
    broker, letter, url = bounced
    assert (letter.reason, letter.subject, letter.stream, letter.consumer) == ("rejected", "send", "mail", "mailer")
    assert letter.deliveries == 1 and letter.dlq_subject == "mail.dlx" and bytes(letter.raw) == b'{"to": "x@example.com"}'
    assert letter.error == "mailbox full" and letter.event_id is not None
    wait_until(lambda: queue_depth(url, "mail.dlq") == 1, 15, "the application's DLQ to keep its message")
    assert DeadLetter.objects.filter(broker=broker).count() == 1


def test_a_double_click_retry_republishes_once_with_confirms_id_and_provenance(bounced, bob, eager_tasks):
    broker, letter, url = bounced
    barrier = threading.Barrier(6)
    statuses = []

    def click():
        client = Client()
        client.force_login(bob)
        barrier.wait()
        statuses.append(client.post(f"/dlq/{letter.id}/retry/", {"attempt": "0"}).status_code)
        connection.close()

    threads = [threading.Thread(target=click) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [302] * 6
    wait_until(lambda: DeadLetter.objects.get(pk=letter.id).status == "retried", 30, "the retry")
    wait_until(lambda: queue_depth(url, "mailer") == 1, 15, "the retried mail back in the mailer queue")
    [sent] = run_async(take_all(url, "mailer"))
    assert sent.message_id == f"eventscope-retry-{letter.id}-1" and sent.content_type == "application/json"
    assert sent.headers["Eventscope-Retry-Of"] == str(letter.id) and "x-death" not in sent.headers
    assert sent.body == b'{"to": "x@example.com"}'
    attempt = RetryAttempt.objects.get(dead_letter_id=letter.id)
    assert (attempt.outcome, attempt.stream) == ("sent", "mail")
    # The tap stored the retry too, under its message id.
    from collector.models import Event
    wait_until(lambda: Event.objects.filter(broker=broker, headers__contains={
        "amqp-message-id": f"eventscope-retry-{letter.id}-1"}).count() == 1, 15, "the retry stored once")


def test_a_worker_killed_after_publishing_settles_on_the_stored_copy_or_unknown_never_two(
        bounced, operator_client, celery_worker_process, tmp_path):
    _, letter, url = bounced
    path = tmp_path / "fault"
    celery_worker_process(env={"EVENTSCOPE_FAULT": f"retry-published:{path}"})
    assert operator_client.post(f"/dlq/{letter.id}/retry/", {"attempt": "0"}).status_code == 302
    child = int(wait_until(lambda: path.exists() and path.read_text().strip(), 30, "the worker to publish"))
    os.kill(child, signal.SIGKILL)
    settled = wait_until(lambda: DeadLetter.objects.exclude(status="retrying").filter(pk=letter.pk).first(), 60,
                         "the retry to settle")
    attempt = RetryAttempt.objects.get(dead_letter_id=letter.id)
    assert (settled.status, attempt.outcome) in {("retried", "found"), ("unknown", "unknown")}
    wait_until(lambda: queue_depth(url, "mailer") is not None, 5, "the mailer queue")
    assert len(run_async(take_all(url, "mailer"))) == 1
