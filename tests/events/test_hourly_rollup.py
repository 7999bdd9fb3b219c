"""The hourly rollup: the writer keeps it beside the per-minute one, and a window with
partial hours at both edges reads hourly rows for its whole hours and minute rows at its
edges, with the same page figures as from minute rows alone."""
import asyncio
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from collector.brokers.nats import RawMessage
from collector.db import conninfo
from collector.events import readers
from collector.events import writer as store
from collector.models import Broker, EventHourRollup, EventRollup
from collector.partitions import EVENTS, Partitions

pytestmark = pytest.mark.django_db(transaction=True)

ENVELOPE = b'{"type": "t%d", "version": "%d", "body": {"n": %d}}'


def write(*batches):
    """Through the collector's own decode (Collector.to_row) and the one writer."""
    from collector.ingest.service import Collector

    broker, _ = Broker.objects.get_or_create(name="nats", defaults={"url": "nats://127.0.0.1:4222"})
    collector = Collector(broker)

    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
            await store.prepare(conn)
            return [await store.write_events(conn, [collector.to_row(m) for m in batch], Partitions(EVENTS))
                    for batch in batches]

    return asyncio.run(go())


def test_pages_read_hourly_rows_for_whole_hours_with_the_same_figures(viewer_client, monkeypatch):
    top = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    # 4 h 40 min of messages, one every 50 s, on 7 subjects; every 11th is not JSON.
    messages = []
    for n in range((4 * 3600 + 40 * 60) // 50):
        when = top - timedelta(hours=4, minutes=20) + timedelta(seconds=50 * n)
        data = b"not json {" if n % 11 == 0 else ENVELOPE % (n % 3, n % 2, n)
        messages.append(RawMessage(f"orders.s{n % 7}", "S", n + 1, when, when, {"Micro-From-Service": f"svc{n % 5}"}, data))
    # Out of order and in several batches: the hourly counts add up whatever the order.
    assert write(messages[1::2], messages[::2][::-1], messages[:40]) == [168, 168, 0]  # the last a replay
    assert sum(EventHourRollup.objects.values_list("count", flat=True)) == len(messages)
    assert sum(EventRollup.objects.values_list("count", flat=True)) == len(messages)
    # A producer seen only in the first hour's minutes before the window: not one of the window's.
    early = top - timedelta(hours=3, minutes=50)
    assert write([RawMessage("orders.s3", "S", 9999, early, early, {"Micro-From-Service": "early"},
                             ENVELOPE % (0, 0, 0))]) == [1]

    # From 17 past one hour to 23 past another: whole hours in between, partial hours at the edges
    # (the first one mostly inside, read as its hour row less the minutes outside, for sums).
    start, end = top - timedelta(hours=3, minutes=43, seconds=30), top + timedelta(minutes=-37)

    def figures(start, end):
        from dashboard.timewindow import Window

        window = Window(start, end, None)
        query = {"from": start.isoformat(), "to": end.isoformat()}
        pages = {sort: viewer_client.get("/api/topics", {**query, "sort": sort}).json()["topics"]
                 for sort in readers.TOPIC_SORTS}
        overview = {k: v for k, v in readers.overview(window).items() if k != "collectors"}
        return pages, overview, readers.topic_facets("orders.s3", window)

    # Sparklines of whole-hour buckets (long windows) come from hourly rows too.
    monkeypatch.setattr(readers, "SPARK_HOURS_FROM", 2)
    # And a window ending now: its last partial hour is the hour row less the minutes still to come.
    now = datetime.now(timezone.utc)
    windows = [(start, end), (start, now), (now - timedelta(hours=2, minutes=50), now)]
    hourly = [figures(*window) for window in windows]
    monkeypatch.setattr(readers, "HOURLY", False)
    minutes_only = [figures(*window) for window in windows]
    assert hourly == minutes_only
    assert len(hourly[0][0]["count"][0]["spark"]) == 4  # 4 clock hours touched
    pages, overview, facets = hourly[0]
    expected = sum(1 for m in messages if start.replace(second=0) <= m.ts < end)
    assert overview["events"] == expected and sum(t["count"] for t in pages["count"]) == expected
    assert overview["producers"] == 5 and facets["types"] == ["t0", "t1", "t2"]
    assert "early" not in {p for t in pages["count"] for p in t["producers"]}


def test_unit_the_window_splits_into_minute_edges_and_whole_hours():
    from dashboard.timewindow import Window

    top = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    params = {}
    sql = readers._rollup(Window(top - timedelta(hours=2, minutes=30, seconds=5), top + timedelta(minutes=10), None),
                          params)
    assert "collector_eventhourrollup" in sql
    assert params["r_start"] == top - timedelta(hours=2, minutes=31)
    assert params["r_h1"] == top - timedelta(hours=2) and params["r_h2"] == top
    # A window that ends on the last second of an hour counts that whole hour from its hourly row.
    params = {}
    readers._rollup(Window(top - timedelta(hours=3), top - timedelta(seconds=1), None), params)
    assert params["r_h1"] == top - timedelta(hours=3) and params["r_h2"] == top
    # Within one hour: minute rows only.
    params = {}
    assert "hourrollup" not in readers._rollup(Window(top, top + timedelta(minutes=59), None), params)
