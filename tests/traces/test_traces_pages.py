"""Trace search, the trace page, share links, retention's 410, RED and compare, and the
Jaeger-compatible query API, over spans written by the real span writer."""
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from django.urls import reverse

from collector.partitions import EVENTS, SPANS, Partitions, partition_name
from collector.traces import writer as spanstore
from collector.db import conninfo
from collector.traces import Span
from tests.conftest import run_async

NOW_US = int(time.time() * 1_000_000)


def span(trace_id, span_id, parent=None, service="checkout", operation="place order", start=0, duration=1000,
         error=False, tags=None, kind="server", links=()):
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, service=service, operation=operation,
                kind=kind, start_us=NOW_US - 60_000_000 + start, duration_us=duration,
                status_code="error" if error else "unset", status_message="boom" if error else "", error=error,
                tags=tags or {}, resource={"service.name": service}, events=[], links=list(links))


def store(spans):
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
            await spanstore.prepare(conn)
            return await spanstore.write_spans(conn, spans, Partitions(SPANS))

    return run_async(go())


T1, T2, T3 = "a1" * 16, "b2" * 16, "c3" * 16


@pytest.fixture
def traces(transactional_db):
    """Three traces: a slow failing checkout, a fast checkout, an inventory job."""
    return store([
        span(T1, "1" * 16, duration=900_000, tags={"order.id": "o-17", "http.status_code": 500}),
        span(T1, "2" * 16, "1" * 16, service="payments", operation="charge", start=1000, duration=800_000,
             error=True, kind="client", tags={"messaging.message.id": "m-1"}),
        span(T2, "3" * 16, duration=20_000, tags={"order.id": "o-18"}),
        span(T3, "4" * 16, service="inventory", operation="reserve", duration=5_000),
    ])


def trace_ids(response):
    return [row["summary"].trace_id for row in response.context["rows"]]


def test_trace_search_filters_by_service_operation_tags_duration_and_errors(traces, viewer_client):
    url = reverse("traces")
    assert set(trace_ids(viewer_client.get(url))) == {T1, T2, T3}
    assert set(trace_ids(viewer_client.get(url, {"service": "checkout"}))) == {T1, T2}
    assert trace_ids(viewer_client.get(url, {"service": "payments", "operation": "charge"})) == [T1]
    assert trace_ids(viewer_client.get(url, {"tags": "order.id=o-18"})) == [T2]
    assert trace_ids(viewer_client.get(url, {"tags": "order.id=o-17 http.status_code=500"})) == [T1]
    assert set(trace_ids(viewer_client.get(url, {"minDuration": "10ms"}))) == {T1, T2}
    assert trace_ids(viewer_client.get(url, {"minDuration": "10ms", "maxDuration": "0.5s"})) == [T2]
    assert trace_ids(viewer_client.get(url, {"error": "1"})) == [T1]
    assert trace_ids(viewer_client.get(url, {"service": "checkout", "last": "5s"})) == []


def test_a_malformed_duration_or_tag_filter_answers_400_with_the_reason(traces, viewer_client):
    response = viewer_client.get(reverse("traces"), {"minDuration": "fast"})
    assert response.status_code == 400 and b"250ms" in response.content
    assert viewer_client.get(reverse("traces"), {"tags": "novalue"}).status_code == 400


def test_the_trace_page_carries_every_span_in_a_json_data_block_with_tags_escaped(viewer_client, transactional_db):
    store([span(T1, "1" * 16, tags={"note": "</script><script>alert(1)</script>"})])
    response = viewer_client.get(reverse("trace", args=[T1]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="trace-data" type="application/json"' in body
    assert "<script>alert(1)" not in body
    assert response.context["data"]["spans"][0]["tags"]["note"].startswith("</script>")


def test_a_trace_page_links_each_span_to_the_stored_events_it_carried(viewer_client, traces):
    from django.db import connection

    from collector.models import Broker, Event

    today = datetime.now(timezone.utc).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(EVENTS, today)} PARTITION OF collector_event "
                       f"FOR VALUES FROM ('{midnight.isoformat()}') TO ('{(midnight + timedelta(days=1)).isoformat()}')")
    broker = Broker.objects.create(name="t", url="nats://x")
    Event.objects.create(id=41, ts=datetime.now(timezone.utc), received_at=datetime.now(timezone.utc), broker=broker,
                         subject="payments", seq=1, raw=b"{}", size=2, format="json", event_id="m-1")
    Event.objects.create(id=42, ts=datetime.now(timezone.utc), received_at=datetime.now(timezone.utc), broker=broker,
                         subject="orders", seq=2, raw=b"{}", size=2, format="json", trace_id=T1, span_id="1" * 16)
    data = viewer_client.get(reverse("trace", args=[T1])).context["data"]
    links = {s["id"]: [e["url"] for e in s["stored_events"]] for s in data["spans"] if s["stored_events"]}
    assert links == {"1" * 16: [reverse("event", args=[42])], "2" * 16: [reverse("event", args=[41])]}
    from collector.traces.readers import spans_for_event

    assert [s.span_id for s in spans_for_event(Event.objects.get(id=41))] == ["2" * 16]
    # ... and the event pages link back to those spans.
    page = viewer_client.get(reverse("event", args=[42])).content.decode()
    assert f'href="{reverse("trace", args=[T1])}?span={"1" * 16}"' in page
    page = viewer_client.get(reverse("event", args=[41])).content.decode()
    assert f'href="{reverse("trace", args=[T1])}?span={"2" * 16}"' in page
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE collector_event")


def test_a_64_bit_trace_id_opens_its_padded_trace_and_an_unknown_one_answers_404(viewer_client, transactional_db):
    short = "00000000000000000000000000abcdef"
    store([span(short, "1" * 16)])
    assert viewer_client.get(reverse("trace", args=["abcdef"])).status_code == 200
    assert viewer_client.get(reverse("trace", args=["f" * 32])).status_code == 404
    assert viewer_client.get(reverse("trace", args=["not-hex"])).status_code == 404


def test_a_trace_gone_by_retention_answers_410_with_the_date(viewer_client, transactional_db):
    """A link that carries its window into a dropped partition says when it was removed."""
    old = span(T1, "1" * 16)
    old = Span(**{**{f: getattr(old, f) for f in old.__slots__}, "start_us": NOW_US - 10 * 86_400_000_000})
    store([old])
    dropped = spanstore.prune_spans(days=7)
    assert len(dropped) == 1
    start = datetime.fromtimestamp(old.start_us / 1e6, timezone.utc)
    window = {"from": (start - timedelta(minutes=1)).isoformat(), "to": (start + timedelta(minutes=1)).isoformat()}
    response = viewer_client.get(reverse("trace", args=[T1]), window)
    assert response.status_code == 410
    assert b"removed by retention" in response.content


def test_the_raw_json_download_holds_every_span(viewer_client, traces):
    response = viewer_client.get(reverse("trace_json", args=[T1]))
    assert response["Content-Disposition"] == f'attachment; filename="trace-{T1}.json"'
    assert sorted(s["operation"] for s in response.json()["spans"]) == ["charge", "place order"]


def make_share_link(client, trace_id, expires="24h"):
    response = client.post(reverse("trace_share_create", args=[trace_id]), {"expires": expires})
    assert response.status_code == 200
    return response.context["url"]


def test_an_operator_makes_a_share_link_that_opens_that_trace_without_login(operator_client, traces, client):
    url = make_share_link(operator_client, T1)
    operator_client.logout()
    response = client.get(url)
    assert response.status_code == 200 and response.context["summary"].trace_id == T1
    assert response.context["shared"] is True
    assert client.get(url + "json/").json()["trace_id"] == T1
    # The link opens that trace and nothing else.
    assert client.get(reverse("trace", args=[T2])).status_code == 302
    assert client.get(reverse("traces")).status_code == 302
    assert client.get(url.replace("/share/traces/", "/share/traces/x")).status_code == 403


def test_a_share_link_stops_working_when_it_expires_or_when_admins_turn_links_off(operator_client, traces, client,
                                                                                    monkeypatch):
    from collector.models.traces import TraceSettings

    from django.utils import timezone as django_timezone

    url = make_share_link(operator_client, T1, expires="1h")
    operator_client.logout()
    later = django_timezone.now() + timedelta(seconds=3601)
    monkeypatch.setattr(django_timezone, "now", lambda: later)
    assert client.get(url).status_code == 403
    monkeypatch.undo()
    assert client.get(url).status_code == 200
    TraceSettings.objects.update_or_create(pk=1, defaults={"share_links": False})
    assert client.get(url).status_code == 403


def test_viewers_cannot_make_share_links(viewer_client, traces):
    assert viewer_client.post(reverse("trace_share_create", args=[T1]), {"expires": "1h"}).status_code == 403


def test_the_red_view_gives_rate_errors_and_percentiles_per_operation(viewer_client, traces):
    rows = {(r["service"], r["operation"]): r for r in viewer_client.get(reverse("traces_red")).context["rows"]}
    charge = rows[("payments", "charge")]
    assert (charge["count"], charge["errors"]) == (1, 1)
    assert 500_000 <= charge["p50_us"] <= 1_000_000
    assert rows[("checkout", "place order")]["count"] == 2


def test_compare_shows_spans_present_in_one_trace_only_and_duration_differences(viewer_client, traces):
    rows = viewer_client.get(reverse("traces_compare"), {"a": T1, "b": T2}).context["rows"]
    by_op = {(r["service"], r["operation"]): r for r in rows}
    assert by_op[("payments", "charge")]["only"] == "a"
    assert by_op[("checkout", "place order")]["delta_us"] == 20_000 - 900_000


# --- the Jaeger-compatible query API ------------------------------------------------------


def assert_structured(body):
    """Jaeger's structuredResponse: data, total, limit, offset, errors."""
    assert set(body) == {"data", "total", "limit", "offset", "errors"}


def test_jaeger_api_lists_services_and_operations(viewer_client, traces):
    body = viewer_client.get("/jaeger/api/services").json()
    assert_structured(body)
    assert body["data"] == ["checkout", "inventory", "payments"] and body["total"] == 3
    assert viewer_client.get("/jaeger/api/services/payments/operations").json()["data"] == ["charge"]
    ops = viewer_client.get("/jaeger/api/operations", {"service": "payments"}).json()["data"]
    assert ops == [{"name": "charge", "spanKind": "client"}]


def test_jaeger_api_trace_has_the_model_json_shape(viewer_client, traces):
    body = viewer_client.get(f"/jaeger/api/traces/{T1}").json()
    assert_structured(body)
    [trace] = body["data"]
    assert set(trace) == {"traceID", "spans", "processes", "warnings"}
    assert trace["traceID"] == T1
    child = next(s for s in trace["spans"] if s["operationName"] == "charge")
    assert set(child) == {"traceID", "spanID", "flags", "operationName", "references", "startTime", "duration",
                          "tags", "logs", "processID", "warnings"}
    assert child["references"] == [{"refType": "CHILD_OF", "traceID": T1, "spanID": "1" * 16}]
    assert child["duration"] == 800_000 and isinstance(child["startTime"], int)
    tags = {t["key"]: t for t in child["tags"]}
    assert tags["error"] == {"key": "error", "type": "bool", "value": True}
    assert tags["span.kind"]["value"] == "client"
    assert trace["processes"][child["processID"]]["serviceName"] == "payments"
    assert {"key", "type", "value"} == set(trace["processes"][child["processID"]]["tags"][0])


def test_jaeger_api_searches_traces_like_grafana_asks(viewer_client, traces):
    end = int(time.time() * 1_000_000)
    params = {"service": "checkout", "start": end - 3_600_000_000, "end": end, "limit": 20,
              "tags": '{"order.id":"o-17"}', "minDuration": "100ms"}
    body = viewer_client.get("/jaeger/api/traces", params).json()
    assert [t["traceID"] for t in body["data"]] == [T1]
    assert body["total"] == 1


def test_jaeger_api_answers_404_for_an_unknown_trace_and_400_for_a_bad_query(viewer_client, traces):
    response = viewer_client.get("/jaeger/api/traces/" + "f" * 32)
    assert response.status_code == 404
    assert response.json()["errors"] == [{"code": 404, "msg": "trace not found", "traceID": "f" * 32}]
    assert viewer_client.get("/jaeger/api/traces", {"minDuration": "soon"}).status_code == 400


def test_jaeger_api_dependencies_count_calls_between_services(viewer_client, traces):
    body = viewer_client.get("/jaeger/api/dependencies", {"endTs": int(time.time() * 1000),
                                                          "lookback": 3_600_000}).json()
    assert body["data"] == [{"parent": "checkout", "child": "payments", "callCount": 1}]


def test_jaeger_api_takes_a_bearer_token_and_refuses_anonymous_callers(client, charlie, traces):
    from collector.models import ApiToken

    assert client.get("/jaeger/api/services").status_code == 401
    token = ApiToken(user=charlie, name="grafana")
    secret = token.issue()
    token.save()
    response = client.get("/jaeger/api/services", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200 and "checkout" in response.json()["data"]


def test_a_span_shows_where_its_message_journey_continues_in_another_trace(viewer_client, traces):
    """The consumer of the message that a span published is found in its own trace, and vice versa."""
    consumer_trace = "d4" * 16
    store([span(consumer_trace, "5" * 16, service="ledger", operation="consume payments", kind="consumer",
                tags={"messaging.message.id": "m-1"}),
           span("e5" * 16, "6" * 16, service="audit", operation="batch", links=[
               {"trace_id": T1, "span_id": "1" * 16, "attributes": {}}])])
    data = viewer_client.get(reverse("trace", args=[T1])).context["data"]
    hops = {s["id"]: [(h["trace_id"], h["service"]) for h in s["hops"]] for s in data["spans"] if s["hops"]}
    assert hops == {"2" * 16: [(consumer_trace, "ledger")], "1" * 16: [("e5" * 16, "audit")]}
    back = viewer_client.get(reverse("trace", args=[consumer_trace])).context["data"]["spans"][0]["hops"]
    assert [(h["trace_id"], h["operation"]) for h in back] == [(T1, "charge")]


def test_a_span_the_database_refuses_is_refused_alone_and_the_rest_of_its_batch_is_stored(transactional_db):
    """A lone surrogate in a tag cannot go into jsonb: that span is refused with the reason,
    its neighbours are stored, and the payload is answered (no endless retries)."""
    import asyncio

    from collector.models import Span as StoredSpan
    from collector.traces.service import SpanSink

    good = span(T1, "1" * 16, tags={"big": 2 ** 80})
    bad = span(T1, "2" * 16, "1" * 16, tags={"text": "\ud800"})

    async def go():
        sink = SpanSink()
        writer = asyncio.create_task(sink.run())
        await sink([good, bad])
        writer.cancel()
        await sink.close()
        return sink

    sink = run_async(go())
    assert (sink.stored, sink.refused) == (1, 1)
    assert StoredSpan.objects.get(trace_id=T1).tags == {"big": 2 ** 80}


def test_the_red_view_counts_the_first_minute_of_a_window_that_starts_mid_minute(viewer_client, transactional_db):
    """Rollups are per minute: a window from 12:03:20.5 counts the spans of minute 12:03,
    microseconds in its start included."""
    minute = (datetime.now(timezone.utc) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    at = minute + timedelta(seconds=40)
    offset = int(at.timestamp() * 1_000_000) - (NOW_US - 60_000_000)
    store([span("d4" * 16, "5" * 16, service="billing", operation="invoice", start=offset)])
    window = {"from": (minute + timedelta(seconds=20, microseconds=500_000)).isoformat(),
              "to": (minute + timedelta(minutes=5)).isoformat()}
    rows = viewer_client.get(reverse("traces_red"), window).context["rows"]
    assert [(r["service"], r["operation"], r["count"]) for r in rows] == [("billing", "invoice", 1)]


@pytest.mark.parametrize("params", [
    {"endTs": 10 ** 17, "lookback": 3_600_000},
    {"endTs": -(10 ** 17), "lookback": 3_600_000},
    {"endTs": 1_000, "lookback": 10 ** 14},
    {"endTs": 10 ** 400, "lookback": 1},
    {"endTs": 1_000, "lookback": -5},
])
def test_jaeger_api_dependencies_answers_400_with_the_reason_for_times_out_of_range(viewer_client, params):
    response = viewer_client.get("/jaeger/api/dependencies", params)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == 400 and ("years 1 and 9999" in error["msg"] or "negative" in error["msg"])


def test_jaeger_api_traces_answers_400_when_lookback_reaches_before_the_year_1(viewer_client, transactional_db):
    start_of_time = -62_135_596_800 * 1_000_000  # 0001-01-01T00:00:00Z in microseconds
    response = viewer_client.get("/jaeger/api/traces", {"end": start_of_time + 1_000_000, "lookback": "2h"})
    assert response.status_code == 400
