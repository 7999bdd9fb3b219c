"""Dead letters captured from JetStream advisories and DLQ subjects, and browsed, against a
real JetStream and PostgreSQL."""
from datetime import timedelta

import nats
import pytest
from django.utils import timezone

from collector.deadletters import capture
from collector.deadletters.capture import store_letters
from collector.deadletters.rules import DlqRules, dlq_match
from collector.models import DeadLetter, Event
from tests.conftest import nats_publish, run_async, wait_until
from tests.deadletters.conftest import failing_consumer, letter, make_stream, unique

pytestmark = pytest.mark.django_db(transaction=True)


# --- capture ---------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, subject, expected", [
    ("*.dlq", "orders.dlq", ["orders"]),
    (">.dlq", "shop.orders.created.dlq", ["shop", "orders", "created"]),
    (">.dlq", "orders.dlq.extra", None),
    ("dlq.>", "dlq.orders.created", ["orders", "created"]),
    (">.deadletter", "orders.deadletter", ["orders"]),
    ("*.dlq", "dlq", None),
])
def test_dlq_patterns_match_and_name_the_original_topic(pattern, subject, expected):
    """`>` takes one or more tokens wherever it stands; the wildcards' tokens are the topic."""
    assert dlq_match(pattern, subject) == expected


def test_a_message_naked_until_max_deliveries_becomes_a_dead_letter_with_its_headers(collector, nats_url):
    """The MAX_DELIVERIES advisory is captured: the message is fetched from its stream with
    its headers, and linked to the event the collector stored."""
    stream = unique("DLA")
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    collector.wait_until_observing(stream)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    nats_publish(nats_url, [(subject, b'{"order": 42}', {"traceparent": traceparent, "X-Customer": "7"})],
                 stream=None)
    thread, stop = failing_consumer(nats_url, stream, subject, "billing", max_deliver=3)
    try:
        found = wait_until(lambda: DeadLetter.objects.filter(stream=stream).first(), 20, "the dead letter")
    finally:
        stop.set()
    assert (found.reason, found.consumer, found.deliveries, found.stream_seq) == ("max_deliveries", "billing", 3, 1)
    assert found.subject == subject and bytes(found.raw) == b'{"order": 42}'
    assert found.headers["X-Customer"] == "7"
    assert found.trace_id == "0af7651916cd43dd8448eb211c80319c"
    event = wait_until(lambda: Event.objects.filter(stream=stream, seq=1).first(), 10, "the stored event")
    from collector.deadletters import readers as dlq_readers

    assert dlq_readers.dead_letter(found.id).event_id == event.id
    # The collector's own observer consumer never produced a dead letter.
    assert not DeadLetter.objects.filter(consumer="eventscope").exists()


def test_a_terminated_message_becomes_a_dead_letter_once(collector, nats_url):
    """MSG_TERMINATED gives reason `terminated`; a replayed advisory stores nothing new."""
    stream = unique("DLT")
    subject = f"{stream.lower()}.payment"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    nats_publish(nats_url, [(subject, b"bad", None)])
    thread, stop = failing_consumer(nats_url, stream, subject, "payments", how="term")
    try:
        found = wait_until(lambda: DeadLetter.objects.filter(stream=stream).first(), 20, "the dead letter")
    finally:
        stop.set()
    assert found.reason == "terminated" and found.consumer == "payments"

    async def again():
        nc = await nats.connect(nats_url)
        advisory = {"stream": stream, "consumer": "payments", "stream_seq": 1, "deliveries": 1}
        letter_ = await capture.letter_from_advisory(nc.jetstream(), found.broker_id, "terminated", advisory)
        await nc.close()
        return letter_

    assert store_letters([run_async(again())]) == []
    assert DeadLetter.objects.filter(stream=stream).count() == 1


def test_a_dead_letter_whose_message_left_the_stream_is_kept_with_a_note(broker, nats_url):
    """When the stream no longer has the sequence, the advisory alone is kept and cannot be retried."""
    stream = unique("DLG")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])

    async def go():
        nc = await nats.connect(nats_url)
        advisory = {"stream": stream, "consumer": "svc", "stream_seq": 99, "deliveries": 5,
                    "timestamp": "2026-11-27T10:00:00.123456789Z"}
        made = await capture.letter_from_advisory(nc.jetstream(), broker.id, "max_deliveries", advisory)
        await nc.close()
        return made

    [kept] = store_letters([run_async(go())])
    assert "no longer has sequence 99" in kept.note
    assert kept.raw is None and not kept.retryable
    assert kept.first_seen.microsecond == 123456


def test_a_service_publishing_to_dlq_subjects_produces_linked_dead_letters(collector, nats_url):
    """`<topic>.dlq` and `dlq.<topic>` messages (stream or core NATS) become dead letters with
    the original topic, the error and attempts from headers, and a link to the stored event."""
    stream = unique("DLQ")
    base = stream.lower()
    make_stream(nats_url, stream, [f"{base}.>"])
    collector.wait_until_observing(stream)
    nats_publish(nats_url, [
        (f"{base}.order.created.dlq", b'{"order": 1}',
         {"X-Error": "customer 7 not found", "X-Attempts": "5", "Micro-From-Service": "billing"}),
    ])
    core = unique("dlq.core").lower()
    nats_publish(nats_url, [(f"{core}.shipment", b'{"shipment": 2}', {"X-Original-Topic": "shipping.requested",
                                                                     "X-Dead-Letter-Reason": "decode_failure"})])
    on_stream = wait_until(lambda: DeadLetter.objects.filter(dlq_subject=f"{base}.order.created.dlq").first(),
                           15, "the stream DLQ dead letter")
    assert on_stream.subject == f"{base}.order.created"
    assert (on_stream.reason, on_stream.error, on_stream.deliveries) == ("dlq_subject", "customer 7 not found", 5)
    assert on_stream.consumer == "billing"
    assert Event.objects.get(id=on_stream.event_id).subject == f"{base}.order.created.dlq"
    on_core = wait_until(lambda: DeadLetter.objects.filter(dlq_subject=f"{core}.shipment").first(), 15,
                         "the core DLQ dead letter")
    assert on_core.subject == "shipping.requested" and on_core.reason == "decode_failure"
    assert on_core.event_id is not None and on_core.stream == ""


def test_dlq_rules_come_from_the_admin_settings(db):
    """Patterns and header names are read from DeadLetterSettings."""
    from collector.models import DeadLetterSettings

    settings_ = DeadLetterSettings.load()
    settings_.dlq_patterns = "failed.>"
    settings_.save()
    rules = DlqRules.load()
    assert rules.original_topic("failed.orders") == "orders"
    assert rules.original_topic("orders.dlq") is None


# --- browse ----------------------------------------------------------------------------


def test_the_dlq_page_groups_counts_and_pages_by_keyset(viewer_client, broker):
    """Counts by topic, consumer and reason come with a trend; the list pages newest first."""
    now = timezone.now()
    for n in range(60):
        letter(broker, "orders" if n % 3 else "payments", consumer="billing",
               first_seen=now - timedelta(seconds=n), error=f"boom {n}")
    body = viewer_client.get("/api/dlq?last=1h").json()
    assert body["summary"]["total"] == 60
    assert {e["key"]: e["count"] for e in body["summary"]["topic"]} == {"orders": 40, "payments": 20}
    assert sum(body["summary"]["reason"][0]["spark"]) == 60
    assert len(body["dead_letters"]) == 50
    rest = viewer_client.get(body["next"]).json()
    assert len(rest["dead_letters"]) == 10 and rest["next"] is None
    ids = [d["id"] for d in body["dead_letters"] + rest["dead_letters"]]
    assert len(set(ids)) == 60
    filtered = viewer_client.get("/api/dlq?last=1h&topic=payments&error=boom+3").json()
    assert {d["error"] for d in filtered["dead_letters"]} == {"boom 3", "boom 30", "boom 33", "boom 36", "boom 39"}
    page = viewer_client.get("/dlq/?last=1h").content.decode()
    assert "By consumer" in page and "Older →" in page and "<polyline" in page


def test_a_dead_letter_has_a_permalink_with_payload_headers_and_history(viewer_client, broker):
    found = letter(broker, "orders.created", raw=b'{"order": "<b>1</b>"}', error="timeout", consumer="billing")
    page = viewer_client.get(f"/dlq/{found.id}/").content.decode()
    assert "timeout" in page and "X-Customer" in page and "&lt;b&gt;1&lt;/b&gt;" in page
    assert "Never retried" in page
    assert viewer_client.get("/dlq/999999999/").status_code == 404
