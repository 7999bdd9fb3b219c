"""The events writer names what it stored: each new row gets its id, a replayed one does
not (what runs after the commit, like the live tail, forwards only new rows)."""
import asyncio
from datetime import datetime, timezone

import psycopg
import pytest

from collector.db import conninfo
from collector.events import writer as store
from collector.models import Broker, Event
from collector.partitions import EVENTS, Partitions

pytestmark = pytest.mark.django_db(transaction=True)


def row(broker, seq, stream="IDS", when=None):
    when = when or datetime.now(timezone.utc)
    return store.EventRow(ts=when, received_at=when, broker_id=broker.id, subject="ids.subject", stream=stream,
                          seq=seq, headers=None, raw=b"{}", size=2, truncated=False, sha256=None, format="json")


def write(*batches):
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
            await store.prepare(conn)
            partitions = Partitions(EVENTS)
            return [await store.write_events(conn, batch, partitions) for batch in batches]

    return asyncio.run(go())


def test_each_new_row_gets_its_stored_id_and_a_replayed_row_keeps_none():
    broker = Broker.objects.create(name="nats", url="nats://127.0.0.1:4222")
    when = datetime.now(timezone.utc)
    first = [row(broker, seq, when=when) for seq in range(1, 301)]
    again = [row(broker, seq, when=when) for seq in range(1, 301)] + [row(broker, 301, when=when)]
    assert write(first, again) == [300, 1]
    stored = dict(Event.objects.filter(stream="IDS").values_list("seq", "id"))
    assert {r.seq: r.id for r in first} == {seq: stored[seq] for seq in range(1, 301)}
    assert [r.id for r in again[:300]] == [None] * 300 and again[300].id == stored[301]
