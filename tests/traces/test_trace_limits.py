"""Caps on what one trace request reads: the Jaeger API's traceID list and limit (400
with the reason), many traces read in one query, and the waterfall's span page with
"Load more spans"."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.traces import jaeger_api, views
from tests.traces.test_traces_pages import T1, span, store, traces  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("traces")
def test_the_jaeger_api_refuses_too_many_trace_ids_and_a_limit_out_of_range(viewer_client):
    many = "&".join(f"traceID={n:032x}" for n in range(jaeger_api.MAX_TRACE_IDS + 1))
    response = viewer_client.get(f"/jaeger/api/traces?{many}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["msg"] == "101 traceID values: at most 100 in one request"
    for limit in ("0", "1501", "99999"):
        response = viewer_client.get(f"/jaeger/api/traces?service=checkout&limit={limit}")
        assert response.status_code == 400, limit
        assert "from 1 to 1500" in response.json()["errors"][0]["msg"]
    assert viewer_client.get("/jaeger/api/traces?service=checkout&limit=1500").status_code == 200
    year_and_more = 367 * 86_400_000_000
    response = viewer_client.get(f"/jaeger/api/traces?service=checkout&start=1&end={1 + year_and_more}")
    assert response.status_code == 400 and "at most 366 days" in response.json()["errors"][0]["msg"]


@pytest.mark.usefixtures("traces")
def test_the_trace_search_page_refuses_a_limit_out_of_range(viewer_client):
    response = viewer_client.get(reverse("traces"), {"limit": "5000"})
    assert response.status_code == 400 and b"from 1 to 1000" in response.content


@pytest.fixture
def thirty_traces(transactional_db):
    ids = [f"{n + 1:032x}" for n in range(30)]
    store([span(t, f"{n + 1:016x}", duration=1000 + n) for n, t in enumerate(ids)]
          + [span(t, f"{n + 101:016x}", parent=f"{n + 1:016x}", service="payments", start=10, duration=500)
             for n, t in enumerate(ids)])
    return ids


def test_the_jaeger_api_reads_many_traces_in_one_query_not_one_per_trace(viewer_client, thirty_traces):
    with CaptureQueriesContext(connection) as by_id:
        body = viewer_client.get("/jaeger/api/traces?" + "&".join(f"traceID={t}" for t in thirty_traces)).json()
    assert sorted(trace["traceID"] for trace in body["data"]) == sorted(t[16:] for t in thirty_traces)
    assert all(len(trace["spans"]) == 2 for trace in body["data"])
    with CaptureQueriesContext(connection) as searched:
        body = viewer_client.get("/jaeger/api/traces?service=checkout&limit=100").json()
    assert len(body["data"]) == 30 and all(len(trace["spans"]) == 2 for trace in body["data"])
    span_reads = [q for q in by_id.captured_queries + searched.captured_queries if 'FROM "collector_span"' in q["sql"]]
    assert len(span_reads) == 2  # one per request, whatever the number of traces


def test_the_waterfall_loads_a_page_of_spans_and_load_more_fetches_the_rest(viewer_client, transactional_db):
    total = views.SPAN_PAGE + 150
    store([span(T1, "0" * 16, duration=5_000_000)]
          + [span(T1, f"{n + 1:016x}", parent="0" * 16, start=n, duration=100) for n in range(total - 1)])
    page = viewer_client.get(reverse("trace", args=[T1]))
    data = page.context["data"]
    assert len(data["spans"]) == views.SPAN_PAGE and data["span_count"] == total
    assert b"This trace has 2150 spans: the waterfall starts with the first 2000" in page.content
    more = viewer_client.get(data["more"]).json()
    assert len(more["spans"]) == 150 and more["more"] is None
    seen = [s["id"] for s in data["spans"]] + [s["id"] for s in more["spans"]]
    assert len(set(seen)) == total
    assert viewer_client.get(reverse("trace_json", args=[T1]), {"after": "nonsense"}).status_code == 400
    # The download still holds every span.
    assert len(viewer_client.get(reverse("trace_json", args=[T1])).json()["spans"]) == total
