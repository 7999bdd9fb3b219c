"""What became of a retry (consumed or died again), and retention (alerts: test_alerts.py)."""
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from collector.deadletters import retention
from collector.models import AuditEntry, Broker, DeadLetter, RetryAttempt
from tests.conftest import nats_publish, wait_until
from tests.deadletters.conftest import failing_consumer, letter, make_stream, unique

pytestmark = pytest.mark.django_db(transaction=True)


# --- the closed loop --------------------------------------------------------------------


def test_unit_a_retried_message_is_followed_until_consumed_or_dead_again(collector, operator_client, eager_tasks,
                                                                        nats_url):
    """Unit test for the retry's part (Celery eager; the collector and consumer are real):
    retry 1 dies again (a new dead letter linked to the old); after the fix, retry 2 is consumed."""
    stream = unique("LOOP")
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    nats_publish(nats_url, [(subject, b'{"order": 1}', None)])
    fixed = threading.Event()
    thread, stop = failing_consumer(nats_url, stream, subject, "billing", until=fixed)
    try:
        first = wait_until(lambda: DeadLetter.objects.filter(stream=stream).first(), 20, "the dead letter")
        Broker.objects.filter(pk=first.broker_id).update(url=nats_url)
        operator_client.post(f"/dlq/{first.id}/retry/", {"attempt": "0"})
        second = wait_until(lambda: DeadLetter.objects.filter(retry_of=first).first(), 20, "it to die again")
        attempt = RetryAttempt.objects.get(dead_letter=first, attempt=1)
        assert (attempt.followup, attempt.next_dead_letter_id) == ("died_again", second.id)
        fixed.set()
        operator_client.post(f"/dlq/{first.id}/retry/", {"attempt": "1"})
        wait_until(lambda: RetryAttempt.objects.get(dead_letter=first, attempt=2).followup == "consumed", 20,
                   "the retry to be consumed")
    finally:
        stop.set()
    page = operator_client.get(f"/dlq/{first.id}/").content.decode()
    assert "died again" in page and "consumed" in page


# --- retention ---------------------------------------------------------------


def test_retention_deletes_old_dead_letters_and_audit_entries(broker):
    old = letter(broker, "orders.created", first_seen=timezone.now() - timedelta(days=31))
    recent = letter(broker, "orders.created")
    entry = AuditEntry.objects.create(action="dlq.retry", target="x")
    AuditEntry.objects.filter(pk=entry.pk).update(at=timezone.now() - timedelta(days=181))
    AuditEntry.objects.create(action="dlq.retry", target="y")
    assert retention.prune() == (1, 1)
    assert list(DeadLetter.objects.values_list("id", flat=True)) == [recent.id]
    assert not DeadLetter.objects.filter(pk=old.pk).exists()
    assert list(AuditEntry.objects.values_list("target", flat=True)) == ["y"]
