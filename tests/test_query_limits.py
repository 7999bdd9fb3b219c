"""Limits a viewer cannot get around: the window's length, the window of filters that
scan raw messages, and the statement timeout of web requests with its clear 503."""
import pytest

from tests.events.test_topic_pages import ENVELOPE, message, write

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def orders():
    assert write([message("order.created", ENVELOPE % (1, n), n + 1, headers={"region": "eu"}, ago=60 - n)
                  for n in range(50)]) == 50


def test_an_absolute_window_longer_than_a_year_is_a_400_with_the_reason(viewer_client):
    window = "from=2024-01-01T00:00:00Z&to=2025-06-01T00:00:00Z"
    page = viewer_client.get(f"/topics/?{window}")
    assert page.status_code == 400 and b"at most 366 days" in page.content
    api = viewer_client.get(f"/api/events?{window}")
    assert api.status_code == 400 and "at most 366 days" in api.json()["error"]
    assert viewer_client.get("/api/events?from=2025-01-01T00:00:00Z&to=2025-12-31T00:00:00Z").status_code == 200


@pytest.mark.parametrize("scan", ["contains=customer", "path=customer.id&equals=3", "header=region%3Deu"])
def test_a_filter_that_scans_raw_messages_takes_at_most_the_scan_window(viewer_client, orders, scan):
    """Past EVENT_SCAN_WINDOW_HOURS (6 h by default) the page and the API answer 400
    naming the filter and the limit; within it the filter answers."""
    api = viewer_client.get(f"/api/events?last=7d&{scan}")
    assert api.status_code == 400
    assert "at most 6 h" in api.json()["error"] and scan.split("=")[0] in api.json()["error"]
    page = viewer_client.get(f"/topics/order.created/?last=2d&{scan}")
    assert page.status_code == 400 and b"at most 6 h" in page.content
    assert viewer_client.get(f"/events/?last=7h&{scan}").status_code == 400
    within = viewer_client.get(f"/api/events?last=6h&{scan}")
    assert within.status_code == 200 and within.json()["events"]
    # Filters an index answers take any window.
    assert viewer_client.get("/api/events?last=7d&type=order.created").status_code == 200


def _many_events(copies):
    """The stored orders, copied `copies` times each in SQL: a table a raw scan takes time over."""
    from django.db import connection

    columns = ("ts, received_at, broker_id, subject, stream, headers, raw, size, truncated, sha256, format, "
               "event_id, type, version, producer, key, trace_id, span_id, payload, note")
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO collector_event ({columns}, seq) SELECT {columns}, seq + 1000 * n "
                       "FROM collector_event, generate_series(1, %s) n", [copies])
        cursor.execute("ANALYZE collector_event")


def test_a_scan_over_the_statement_timeout_is_stopped_with_a_clear_503_page_and_json(viewer_client, orders, settings):
    _many_events(6000)  # 300,000 messages: a scan of them takes far longer than 20 ms on any machine
    settings.DB_STATEMENT_TIMEOUT = 0.02
    page = viewer_client.get("/events/?last=1h&contains=no-such-bytes")
    assert page.status_code == 503
    assert b"took longer than 0.02 s (DB_STATEMENT_TIMEOUT) and was stopped" in page.content
    assert b"Narrow the time window or the filters" in page.content
    api = viewer_client.get("/api/events?last=1h&contains=no-such-bytes")
    assert api.status_code == 503 and api.json()["timeout_seconds"] == 0.02
    # The same scan without the limit answers: the 503 came from the timeout alone.
    settings.DB_STATEMENT_TIMEOUT = 0
    assert viewer_client.get("/api/events?last=1h&contains=no-such-bytes").status_code == 200


def test_the_statement_timeout_binds_web_requests_only(viewer_client, settings):
    """Set for the request's queries, reset when the request ends: code outside a web
    request on the same connection (the collector's, a worker's) runs unbounded."""
    from django.db import connection

    settings.DB_STATEMENT_TIMEOUT = 15
    seen = []

    def probe(request):
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            seen.append(cursor.fetchone()[0])

    from dashboard.middleware import StatementTimeoutMiddleware

    StatementTimeoutMiddleware(lambda request: probe(request) or "done")(None)
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        after = cursor.fetchone()[0]
    assert seen == ["15s"] and after == "0"


def test_unit_db_statement_timeout_takes_seconds_and_refuses_anything_else(monkeypatch):
    from dashboard.env import ConfigError, env_seconds

    monkeypatch.setenv("DB_STATEMENT_TIMEOUT", "2.5")
    assert env_seconds("DB_STATEMENT_TIMEOUT", 15) == 2.5
    monkeypatch.delenv("DB_STATEMENT_TIMEOUT")
    assert env_seconds("DB_STATEMENT_TIMEOUT", 15) == 15
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("DB_STATEMENT_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="DB_STATEMENT_TIMEOUT"):
            env_seconds("DB_STATEMENT_TIMEOUT", 15, maximum=3600)
