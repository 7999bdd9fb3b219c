"""Backfill from PostgreSQL: what a live client missed, in commit order (a row received
earlier but committed later is found), filtered exactly as the forwarded events are."""
import asyncio
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from collector.db import conninfo
from collector.events import writer as store
from collector.live import readers
from collector.live.filters import Filters
from collector.live.protocol import OVERLAP, for_browser, micros
from collector.models import Broker
from collector.partitions import EVENTS, Partitions

pytestmark = pytest.mark.django_db(transaction=True)


def event_row(broker, seq, subject, received_at, producer=None, type_=None, version=None, payload=None):
    return store.EventRow(ts=received_at, received_at=received_at, broker_id=broker.id, subject=subject, stream="BF",
                          seq=seq, headers=None, raw=b"raw", size=3, truncated=False, sha256=None, format="json",
                          producer=producer, type=type_, version=version, payload=payload)


def commit(*rows):
    """Write rows in one transaction through the store's writer, as a collector does."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
            await store.prepare(conn)
            await store.write_events(conn, list(rows), Partitions(EVENTS))

    asyncio.run(go())
    return rows


@pytest.fixture
def broker():
    return Broker.objects.create(name="nats", url="nats://127.0.0.1:4222")


def test_a_row_received_earlier_but_committed_later_is_backfilled_from_a_cursor_past_it(broker):
    now = datetime.now(timezone.utc)
    (old,) = commit(event_row(broker, 1, "bf.old", now - timedelta(minutes=5)))
    floor = old.id
    # Two writers: B (received second) commits first; a client sees B and its cursor moves
    # past A's receive time; then A (received first) commits with a higher id.
    (b,) = commit(event_row(broker, 3, "bf.orders", now))
    (a,) = commit(event_row(broker, 2, "bf.orders", now - timedelta(seconds=1)))
    assert a.id > b.id and a.received_at < b.received_at

    events, missed, more = readers.backfill(Filters(), micros(b.received_at) - OVERLAP, floor, exclude={b.id})
    events = [for_browser(e) for e in events]
    assert [e["id"] for e in events] == [a.id] and (missed, more) == (0, False)
    assert events[0]["rx"] == micros(a.received_at)


def test_the_backfill_filters_exactly_as_the_live_tail_does(broker):
    now = datetime.now(timezone.utc)
    rows = commit(
        event_row(broker, 1, "orders.created", now, producer="shop", type_="order.created", version="2",
                  payload={"order": "A-42"}),
        event_row(broker, 2, "orders.eu.created", now, producer="shop", type_="order.created", version="2"),
        event_row(broker, 3, "payments.card.captured", now, producer="billing", type_="payment.captured", version="1",
                  payload={"order": "a-42"}),
        event_row(broker, 4, "payments", now, producer="billing"),
        event_row(broker, 5, "ordersXcreated", now),
    )
    cases = {
        "subject one token": ({"subject": "orders.*"}, [1]),
        "subject the rest": ({"subject": "payments.>"}, [3]),
        "service": ({"service": "billing"}, [3, 4]),
        "type and version": ({"type": "order.created", "version": "2"}, [1, 2]),
        "text, any case, in the payload": ({"q": "A-42"}, [1, 3]),
        "text in the subject": ({"q": "EU"}, [2]),
    }
    by_seq = {row.seq: row.id for row in rows}
    for name, (params, expected) in cases.items():
        filters = Filters.parse(params)
        events, _, _ = readers.backfill(filters, micros(now) - OVERLAP, 0)
        assert sorted(for_browser(e)["id"] for e in events) == sorted(by_seq[s] for s in expected), name
        assert all(filters.matches(e) for e in events), name


def test_the_backfill_returns_the_newest_rows_up_to_its_limit_and_counts_the_others(broker):
    now = datetime.now(timezone.utc)
    rows = commit(*[event_row(broker, n, "bf.many", now + timedelta(milliseconds=n)) for n in range(1, 31)])
    events, missed, more = readers.backfill(Filters(), micros(now) - OVERLAP, 0, limit=10)
    assert [for_browser(e)["id"] for e in events] == [r.id for r in rows[-10:]], "the newest ten, oldest first"
    assert (missed, more) == (20, False)
    events, missed, more = readers.backfill(Filters(), micros(now) - OVERLAP, 0, limit=10, scan=15)
    assert len(events) == 10 and missed == 5 and more, "a scan cut short says so"


def test_rows_at_or_below_the_floor_or_before_the_window_are_not_backfilled(broker):
    now = datetime.now(timezone.utc)
    (early,) = commit(event_row(broker, 1, "bf.w", now - timedelta(seconds=30)))
    (inside,) = commit(event_row(broker, 2, "bf.w", now))
    events, _, _ = readers.backfill(Filters(), micros(now) - OVERLAP, 0)
    assert [for_browser(e)["id"] for e in events] == [inside.id]
    events, _, _ = readers.backfill(Filters(), micros(now) - 60_000_000, inside.id)
    assert events == []
    assert early.id < inside.id
