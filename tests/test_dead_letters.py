"""Dead letters: captured from JetStream advisories and DLQ subjects, browsed, and retried
exactly once, against a real JetStream, PostgreSQL and (for the worker) Redis."""
import asyncio
import threading
import uuid
from datetime import timedelta

import nats
import pytest
from django.test import Client
from django.utils import timezone
from nats.js import api

from collector import deadletters
from collector.deadletters import DlqRules, dlq_match, store_letters
from collector.models import AuditEntry, Broker, DeadLetter, Event, RetryAttempt, RetryJob, RuntimeSettings, Topic
from dashboard import tasks_dlq
from tests.conftest import RunningCollector, nats_publish, run_async, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


@pytest.fixture
def collector(transactional_db):
    """A running collector with dead-letter capture installed, as `manage.py collect` has it."""
    running = RunningCollector(installs=[deadletters.install])
    yield running
    running.stop()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling thread, so a test sees their effect at once."""
    from dashboard.celery import app

    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


@pytest.fixture
def broker(transactional_db, nats_url):
    return Broker.objects.update_or_create(name="nats", defaults={"url": nats_url, "kind": "nats"})[0]


def failing_consumer(url, stream, subject, durable, max_deliver=2, how="nak", until=None):
    """A service that fails every message (nak until max deliveries, or term) until `until` is set;
    then it acks. Runs in a thread until `stop` is set; returns (thread, stop)."""
    stop = threading.Event()

    async def serve():
        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream,
                                      config=api.ConsumerConfig(max_deliver=max_deliver, ack_wait=2))
        while not stop.is_set():
            try:
                msgs = await sub.fetch(10, timeout=0.3)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            for msg in msgs:
                if until is not None and until.is_set():
                    await msg.ack()
                elif how == "term":
                    await msg.term()
                else:
                    await msg.nak()
        await nc.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    return thread, stop


def stream_messages(url, stream):
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)
                 if info.state.messages]
        await nc.close()
        return found

    return run_async(go())


def make_stream(url, stream, subjects):
    nats_publish(url, [], stream=stream, subjects=subjects)


def letter(broker, subject, raw=b'{"order": 1}', headers=None, **fields):
    """A stored dead letter, through the capture's own writer."""
    now = timezone.now()
    fields.setdefault("key", f"test:{uuid.uuid4()}")
    fields.setdefault("first_seen", now)
    fields.setdefault("reason", DeadLetter.Reason.MAX_DELIVERIES)
    found = DeadLetter(broker=broker, subject=subject, raw=raw, headers=headers or {"X-Customer": "7"},
                       last_seen=fields["first_seen"], size=len(raw or b""), **fields)
    return store_letters([found])[0]


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
    from collector import dlq_readers

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
        letter_ = await deadletters.letter_from_advisory(nc.jetstream(), found.broker_id, "terminated", advisory)
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
        made = await deadletters.letter_from_advisory(nc.jetstream(), broker.id, "max_deliveries", advisory)
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


# --- retry -----------------------------------------------------------------------------


@pytest.fixture
def orders(broker, nats_url):
    """A stream for the original subject and a dead letter from it."""
    stream = unique("RTY")
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    return stream, subject, letter(broker, subject, headers={"X-Customer": "7", "Nats-Msg-Id": "original-1"})


def test_retry_republishes_once_with_provenance_and_audit(operator_client, eager_tasks, orders, nats_url):
    """The message goes back to its subject with a dedup key from the dead letter and attempt."""
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


def test_several_threads_posting_the_same_retry_send_one_message(bob, eager_tasks, orders, nats_url):
    """Double clicks and two tabs: eight simultaneous POSTs of the same form, one message."""
    from django.db import connection

    stream, subject, found = orders
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
    assert len(stream_messages(nats_url, stream)) == 1
    assert RetryAttempt.objects.filter(dead_letter=found).count() == 1
    assert AuditEntry.objects.filter(action="dlq.retry", result__startswith="refused").count() == 7


def test_a_resubmitted_form_sends_nothing_but_a_deliberate_new_retry_does(operator_client, eager_tasks, orders,
                                                                         nats_url):
    stream, subject, found = orders
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"})
    again = operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"}, follow=True)
    assert b"Someone else already retried" in again.content
    assert len(stream_messages(nats_url, stream)) == 1
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "1"})
    messages = stream_messages(nats_url, stream)
    assert [m.headers["Eventscope-Attempt"] for m in messages] == ["1", "2"]


def test_two_workers_sending_the_same_attempt_produce_one_message(bob, orders, nats_url):
    """Two workers race for one attempt: one sends, the other finds it taken."""
    from django.db import connection

    stream, subject, found = orders
    attempt = tasks_dlq.claim(found.id, 0, bob)
    results = []

    def work():
        results.append(tasks_dlq.send_attempts([attempt.id], "bob"))
        connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results, key=len) == [{}, {"sent": 1}]
    # A worker that died after publishing, before recording: its attempt stays `sending`.
    # While that is recent nobody takes it; once stale, the redelivered task sends again
    # and JetStream drops the copy.
    RetryAttempt.objects.filter(pk=attempt.id).update(outcome="sending", sent_at=timezone.now())
    assert tasks_dlq.send_attempts([attempt.id], "bob") == {}
    RetryAttempt.objects.filter(pk=attempt.id).update(sent_at=timezone.now() - timedelta(minutes=10))
    assert tasks_dlq.send_attempts([attempt.id], "bob") == {"duplicate": 1}
    assert len(stream_messages(nats_url, stream)) == 1


def test_a_retry_while_the_broker_is_down_leaves_it_retryable_with_the_error(operator_client, eager_tasks, orders,
                                                                            broker, nats_url):
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


def test_a_retry_to_a_subject_no_stream_captures_fails_clearly(operator_client, eager_tasks, broker):
    found = letter(broker, unique("gone.").lower() + ".subject")
    operator_client.post(f"/dlq/{found.id}/retry/", {"attempt": "0"})
    found.refresh_from_db()
    assert found.status == "new"
    assert "no stream captures" in found.status_reason and "nothing was sent" in found.status_reason


def test_an_admin_edits_payload_and_headers_then_retries(admin_client_, operator_client, eager_tasks, orders,
                                                       nats_url, alice):
    stream, subject, found = orders
    edited = {"attempt": "0", "edit": "1", "headers": "X-Customer: 8", "payload": '{"order": 2}'}
    assert operator_client.post(f"/dlq/{found.id}/retry/", edited).status_code == 403
    admin_client_.force_login(alice)
    assert admin_client_.post(f"/dlq/{found.id}/retry/", edited).status_code == 302
    [sent] = stream_messages(nats_url, stream)
    assert sent.data == b'{"order": 2}' and sent.headers["X-Customer"] == "8"
    assert sent.headers["Eventscope-Retried-By"] == "alice"


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


def test_bulk_retry_of_a_selection_and_of_a_filter_with_a_dry_run(operator_client, eager_tasks, orders, broker,
                                                                 nats_url):
    stream, subject, found = orders
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
    progress = operator_client.get(f"/api/dlq/jobs/{job.id}").json()
    assert (progress["state"], progress["sent"], progress["percent"]) == ("done", 2, 100)
    assert 'value="100"' in operator_client.get(f"/dlq/jobs/{job.id}/").content.decode()  # the progress bar
    rest = operator_client.post("/dlq/retry/", {"scope": "filter", "consumer": "billing", **window})
    job = RetryJob.objects.get(pk=int(rest["Location"].rstrip("/").split("/")[-1]))
    assert (job.state, job.total, job.sent) == ("done", 4, 4)
    assert len(stream_messages(nats_url, stream)) == 6
    assert "4 republished" in AuditEntry.objects.filter(action="dlq.bulk_retry").order_by("-id")[0].result


# --- the closed loop --------------------------------------------------------------------


def test_a_retried_message_is_followed_until_consumed_or_dead_again(collector, operator_client, eager_tasks,
                                                                   nats_url):
    """Retry 1 dies again (a new dead letter linked to the old); after the fix, retry 2 is consumed."""
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


# --- alerts and retention ---------------------------------------------------------------


def test_dead_letter_growth_above_a_threshold_is_recorded_once_and_posted_to_the_webhook(broker):
    """Six dead letters on orders.* against a threshold of five in ten minutes: one alert,
    posted as JSON to a real HTTP endpoint; a second check in the same window adds none."""
    import json
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from collector.models import DeadLetterAlert, DeadLetterThreshold

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        DeadLetterThreshold.objects.create(subject_pattern="orders.*", count=5, minutes=10,
                                           webhook=f"http://127.0.0.1:{server.server_port}/hook")
        for n in range(6):
            letter(broker, "orders.created" if n % 2 else "orders.paid")
        letter(broker, "payments.failed")
        [alert] = deadletters.check_thresholds()
        assert deadletters.check_thresholds() == []
    finally:
        server.shutdown()
    assert alert.count == 6 and alert.notified == "posted: HTTP 204"
    assert received[0]["count"] == 6 and received[0]["subjects"] == {"orders.created": 3, "orders.paid": 3}
    assert DeadLetterAlert.objects.count() == 1


def test_retention_deletes_old_dead_letters_and_audit_entries(broker):
    old = letter(broker, "orders.created", first_seen=timezone.now() - timedelta(days=31))
    recent = letter(broker, "orders.created")
    entry = AuditEntry.objects.create(action="dlq.retry", target="x")
    AuditEntry.objects.filter(pk=entry.pk).update(at=timezone.now() - timedelta(days=181))
    AuditEntry.objects.create(action="dlq.retry", target="y")
    assert deadletters.prune() == (1, 1)
    assert list(DeadLetter.objects.values_list("id", flat=True)) == [recent.id]
    assert not DeadLetter.objects.filter(pk=old.pk).exists()
    assert list(AuditEntry.objects.values_list("target", flat=True)) == ["y"]


def test_the_api_retry_takes_the_same_claim_and_says_409_to_a_stale_attempt(operator_client, eager_tasks, orders,
                                                                          nats_url):
    stream, subject, found = orders
    first = operator_client.post(f"/api/dlq/{found.id}/retry", {"attempt": "0"})
    assert first.status_code == 202 and first.json()["msg_id"] == f"eventscope-retry-{found.id}-1"
    assert operator_client.post(f"/api/dlq/{found.id}/retry", {"attempt": "0"}).status_code == 409
    detail = operator_client.get(f"/api/dlq/{found.id}").json()
    assert detail["status"] == "retried" and [r["outcome"] for r in detail["retries"]] == ["sent"]
    assert len(stream_messages(nats_url, stream)) == 1
