"""Topic and event pages and their JSON API, over rows the real writer stored."""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from collector.events import writer as store
from collector.partitions import EVENTS, Partitions
from collector.brokers.nats import RawMessage
from collector.models import Broker, Event, PrunedRange

pytestmark = pytest.mark.django_db(transaction=True)


def write(messages, max_payload=1024 * 1024):
    """Store raw messages through the collector's own decode-and-write path."""
    import psycopg

    from collector.db import conninfo
    from collector.ingest.service import Collector

    broker, _ = Broker.objects.get_or_create(name="nats", defaults={"url": "nats://127.0.0.1:4222"})
    collector = Collector(broker, max_payload=max_payload)
    rows = [collector.to_row(m) for m in messages]

    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
            await store.prepare(conn)
            return await store.write_events(conn, rows, Partitions(EVENTS))

    return asyncio.run(go())


def message(subject, data, seq, headers=None, stream="S", ago=0):
    when = datetime.now(timezone.utc) - timedelta(seconds=ago)
    return RawMessage(subject, stream, seq, when, when, headers, data)


ENVELOPE = b'{"type": "order.created", "version": "%d", "timestamp": "2026-11-27T10:00:00Z", "body": {"customer": {"id": %d}}}'


@pytest.fixture
def orders():
    messages = [message("order.created", ENVELOPE % (1 + n % 2, n), n + 1,
                        headers={"Micro-From-Service": "order", "region": "eu" if n % 3 else "us"}, ago=120 - n)
                for n in range(120)]
    assert write(messages) == 120
    return messages


def test_the_topic_list_shows_traffic_producers_and_a_sparkline(viewer_client, orders):
    response = viewer_client.get("/topics/?last=1h")
    html = response.content.decode()
    assert response.status_code == 200
    assert "order.created" in html and "<polyline" in html
    api = viewer_client.get("/api/topics?last=1h").json()
    topic = [t for t in api["topics"] if t["name"] == "order.created"][0]
    assert topic["count"] == 120 and topic["errors"] == 0
    assert topic["producers"] == ["order"]
    assert sum(topic["spark"]) == 120


def test_the_topic_page_pages_newest_first_by_keyset(viewer_client, orders):
    first = viewer_client.get("/api/topics/order.created/events?last=1h").json()
    assert [e["seq"] for e in first["events"]] == list(range(120, 70, -1))
    second = viewer_client.get(first["next"]).json()
    assert [e["seq"] for e in second["events"]] == list(range(70, 20, -1))
    third = viewer_client.get(second["next"]).json()
    assert [e["seq"] for e in third["events"]] == list(range(20, 0, -1))
    assert third["next"] is None
    page = viewer_client.get("/topics/order.created/?last=1h").content.decode()
    assert "Older →" in page and "OFFSET" not in page


@pytest.mark.parametrize("query, expected", [
    ("version=2", 60),
    ("type=order.created", 120),
    ("producer=order", 120),
    ("producer=nobody", 0),
    ("header=region%3Dus", 40),
    ("header=REGION%3Dus", 40),
    ("path=body.customer.id&equals=7", 0),  # paths look into the decoded payload: the body
    ("path=customer.id&equals=7", 1),
    ("contains=%22id%22%3A%2011%7D", 1),
])
def test_the_topic_filters_narrow_the_messages(viewer_client, orders, query, expected):
    found, url = 0, f"/api/topics/order.created/events?last=1h&{query}"
    while url:
        body = viewer_client.get(url).json()
        found += len(body["events"])
        url = body["next"]
    assert found == expected


def test_a_malformed_filter_is_a_400_with_the_reason(viewer_client, orders):
    response = viewer_client.get("/api/topics/order.created/events?header=novalue")
    assert response.status_code == 400
    assert "name=value" in response.json()["error"]
    assert viewer_client.get("/topics/order.created/?before=garbage").status_code == 400


def test_the_event_page_shows_headers_payload_and_neighbours(viewer_client, orders):
    event = Event.objects.get(seq=50)
    html = viewer_client.get(f"/events/{event.id}/").content.decode()
    assert "order.created" in html and "region" in html
    assert "&quot;customer&quot;" in html
    older, newer = Event.objects.get(seq=49), Event.objects.get(seq=51)
    assert f"/events/{older.id}/" in html and f"/events/{newer.id}/" in html
    raw = viewer_client.get(f"/events/{event.id}/raw/")
    assert raw["Content-Disposition"] == f'attachment; filename="event-{event.id}.bin"'
    assert raw.content == ENVELOPE % (1 + 49 % 2, 49)


def test_a_script_payload_renders_as_text(viewer_client):
    write([message("xss", b'<script>alert(1)</script>', 1, headers={"h": "<img src=x onerror=alert(1)>"})])
    event = Event.objects.get(subject="xss")
    html = viewer_client.get(f"/events/{event.id}/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_binary_payloads_show_as_hex(viewer_client):
    write([message("bin", bytes(range(256)), 1)])
    event = Event.objects.get(subject="bin")
    html = viewer_client.get(f"/events/{event.id}/").content.decode()
    assert "00000000  00 01 02 03" in html
    assert viewer_client.get(f"/api/events/{event.id}").json()["note"]


def test_an_event_gone_by_retention_answers_410_with_the_date(viewer_client):
    PrunedRange.objects.create(table="collector_event", start=datetime(2026, 1, 1, tzinfo=timezone.utc),
                               end=datetime(2026, 1, 2, tzinfo=timezone.utc), min_id=10_000_000, max_id=10_000_500)
    page = viewer_client.get("/events/10000123/")
    assert page.status_code == 410 and b"removed by retention" in page.content
    api = viewer_client.get("/api/events/10000123")
    assert api.status_code == 410 and api.json()["expired"]
    assert viewer_client.get("/events/99999999999/").status_code == 404


def test_search_jumps_to_an_event_by_id_key_or_trace(viewer_client):
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    write([message("pay", b'{"type": "p", "version": "1", "timestamp": "2026-11-27T10:00:00Z", "body": {}}', 1,
                   headers={"traceparent": traceparent, "key": "cust-42"})])
    event = Event.objects.get(subject="pay")
    by_key = viewer_client.get("/search/?q=cust-42")
    assert by_key.status_code == 302 and by_key["Location"] == f"/events/{event.id}/"
    by_trace = viewer_client.get("/search/?q=4bf92f3577b34da6a3ce929d0e0e4736")
    assert by_trace.status_code == 302 and "4bf92f3577b34da6a3ce929d0e0e4736" in by_trace["Location"]
    listing = viewer_client.get(by_trace["Location"]).content.decode()
    assert f"/events/{event.id}/" in listing
    assert viewer_client.get("/search/?q=nothing-like-this").status_code == 404


def test_viewers_see_no_publish_form_and_cannot_post(viewer_client, orders):
    assert b'id="publish"' not in viewer_client.get("/topics/order.created/").content
    assert viewer_client.post("/topics/order.created/publish/", {"payload": "x"}).status_code == 403


def test_operators_see_the_publish_form_with_the_last_message_as_template(operator_client, orders):
    html = operator_client.get("/topics/order.created/").content.decode()
    assert 'id="publish"' in html
    assert "region: " in html and "&quot;customer&quot;: {&quot;id&quot;: 119}" in html


def test_the_publish_template_leaves_out_the_headers_only_eventscope_sets(operator_client):
    """A retried message as the template: its dedup key and provenance are not offered for
    typing (they would be refused)."""
    write([message("order.paid", b"{}", 1, headers={"region": "eu", "Nats-Msg-Id": "eventscope-retry-5-1",
                                                     "Eventscope-Retry-Of": "5", "Eventscope-Attempt": "1"})])
    html = operator_client.get("/topics/order.paid/").content.decode()
    typed = html.split('id="publish-headers"', 1)[1].split("</textarea>", 1)[0]
    assert "region: eu" in typed and "Nats-Msg-Id" not in typed and "Eventscope-" not in typed


def test_read_only_mode_hides_and_refuses_publishing(operator_client, orders):
    from collector.models import RuntimeSettings

    settings = RuntimeSettings.load()
    settings.read_only = True
    settings.save()
    assert b'id="publish"' not in operator_client.get("/topics/order.created/").content
    assert operator_client.post("/topics/order.created/publish/", {"payload": "x"}).status_code == 403


def test_a_time_without_a_zone_is_read_as_utc_as_the_pages_label_their_times(viewer_client):
    """Pages print times in UTC and say so; a `from`/`to` typed without a zone is read as
    UTC, so a time copied from a page selects that same moment. A zone given is honoured."""
    when = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(second=7, microsecond=0)
    ago = (datetime.now(timezone.utc) - when).total_seconds()
    write([message("clock.check", b'{"n": 1}', 1, ago=ago)])
    row = f'<a href="/events/{Event.objects.get(subject="clock.check").id}/">{when:%Y-%m-%d %H:%M:%S}'
    start, end = when - timedelta(minutes=5), when + timedelta(minutes=5)
    naive = {"from": start.replace(tzinfo=None).isoformat(), "to": end.replace(tzinfo=None).isoformat()}
    html = viewer_client.get("/topics/clock.check/", naive).content.decode()
    assert f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC" in html  # the window, labelled
    assert "<th>Time (UTC)</th>" in html and row in html  # the message's row, in UTC
    # The same window written in another zone selects the same message.
    plus_one = timezone(timedelta(hours=1))
    zoned = {"from": start.astimezone(plus_one).isoformat(), "to": end.astimezone(plus_one).isoformat()}
    assert row in viewer_client.get("/topics/clock.check/", zoned).content.decode()
    # The naive clock one hour later (what a reader an hour east of UTC would see) does not.
    later = {"from": (start + timedelta(hours=1)).replace(tzinfo=None).isoformat(),
             "to": (end + timedelta(hours=1)).replace(tzinfo=None).isoformat()}
    assert row not in viewer_client.get("/topics/clock.check/", later).content.decode()
