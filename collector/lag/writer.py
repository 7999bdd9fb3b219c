"""The one writer of the lag tables, on the sampler's own connection (which also holds the
sampler's advisory lock). A round is one transaction: its rows are copied into a temporary
table once, and from there go the samples, the consumers' latest figures and both rollups.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from collector.partitions import LAG_SAMPLES

ROUND_COLUMNS = [
    ("consumer_id", "bigint"), ("at", "timestamptz"), ("state", "text"), ("pending", "bigint"),
    ("ack_pending", "bigint"), ("redelivered", "bigint"), ("waiting", "bigint"), ("delivered_seq", "bigint"),
    ("ack_floor_seq", "bigint"), ("stream_first_seq", "bigint"), ("stream_last_seq", "bigint"),
    ("last_active", "timestamptz"), ("oldest_ts", "timestamptz"),
    ("oldest_source", "text"), ("consume_rate", "float8"), ("produce_rate", "float8"), ("drain_seconds", "float8"),
    ("growing", "boolean"), ("note", "text"), ("oldest_age", "float8"), ("status", "text"),
    ("status_changed", "boolean"), ("config", "jsonb"), ("created_at", "timestamptz"),
]
SAMPLE_COLUMNS = [name for name, _ in ROUND_COLUMNS[:19]]


@dataclass
class Registered:
    """A consumer's row as the sampler needs it between rounds."""

    id: int
    status: str
    gone_at: datetime | None
    created_at: datetime | None
    observer: bool


@dataclass
class Round:
    at: datetime
    rows: list = field(default_factory=list)  # tuples in ROUND_COLUMNS order
    events: list = field(default_factory=list)  # (consumer_id, kind, detail)
    crossings: list = field(default_factory=list)  # dicts: consumer_id, status_from, status_to, lag, oldest_age, threshold_id, reason
    consumers: int = 0
    unread_streams: int = 0
    note: str = ""


async def load_registry(conn, broker_id):
    async with conn.cursor() as cur:
        await cur.execute("SELECT id, stream, name, status, gone_at, created_at, observer FROM collector_consumer "
                          "WHERE broker_id = %s", [broker_id])
        return {(stream, name): Registered(ident, status, gone, created, observer)
                for ident, stream, name, status, gone, created, observer in await cur.fetchall()}


async def register(conn, broker_id, kind, readings, now):
    """Rows for consumers seen for the first time; returns {(stream, name): Registered}."""
    async with conn.cursor() as cur:
        await cur.execute(
            """
            INSERT INTO collector_consumer (broker_id, stream, name, kind, observer, config, created_at, first_seen,
                                            last_seen, status, growing, note)
            SELECT %s, u.stream, u.name, %s, u.observer, u.config::jsonb, u.created, %s, %s, 'ok', false, ''
            FROM unnest(%s::text[], %s::text[], %s::bool[], %s::text[], %s::timestamptz[])
                 AS u(stream, name, observer, config, created)
            ON CONFLICT (broker_id, stream, name) DO UPDATE SET last_seen = excluded.last_seen
            RETURNING id, stream, name, created_at, observer
            """,
            [broker_id, kind, now, now, [r.stream for r in readings], [r.name for r in readings],
             [r.observer for r in readings], [json.dumps(r.config) for r in readings], [r.created for r in readings]],
        )
        return {(stream, name): Registered(ident, "ok", None, created, observer)
                for ident, stream, name, created, observer in await cur.fetchall()}


async def load_thresholds(conn):
    from collector.lag.thresholds import SELECT

    async with conn.cursor() as cur:
        await cur.execute(SELECT)
        return await cur.fetchall()


async def produce_rates(conn, broker_id, now):
    """{stream: [(subject, messages/s)]} over the last minute or so, from the events rollup
    (the store's per-minute count of what was published on each subject)."""
    start = (now - timedelta(seconds=60)).replace(second=0, microsecond=0)
    seconds = max((now - start).total_seconds(), 1.0)
    async with conn.cursor() as cur:
        await cur.execute(
            """
            SELECT t.stream, r.subject, sum(r.count)::float8
            FROM collector_eventrollup r JOIN collector_topic t ON t.broker_id = r.broker_id AND t.name = r.subject
            WHERE r.broker_id = %s AND r.minute >= %s AND t.stream <> ''
            GROUP BY 1, 2
            """,
            [broker_id, start],
        )
        rates = {}
        for stream, subject, count in await cur.fetchall():
            rates.setdefault(stream, []).append((subject, count / seconds))
        return rates


async def stored_after(conn, broker_id, asks, limit=20):
    """For each (stream, seq): the first `limit` stored messages after seq, as
    [(seq, subject, ts)], in the order asked."""
    found = [[] for _ in asks]
    if not asks:
        return found
    async with conn.cursor() as cur:
        await cur.execute(
            """
            SELECT k.i, e.seq, e.subject, e.ts
            FROM unnest(%s::text[], %s::int8[]) WITH ORDINALITY AS k(stream, floor, i)
            CROSS JOIN LATERAL (
                SELECT seq, subject, ts FROM collector_event
                WHERE broker_id = %s AND stream = k.stream AND seq > k.floor
                ORDER BY seq LIMIT %s
            ) e
            ORDER BY k.i, e.seq
            """,
            [[a[0] for a in asks], [a[1] for a in asks], broker_id, limit],
        )
        for index, seq, subject, ts in await cur.fetchall():
            found[index - 1].append((seq, subject, ts))
    return found


async def dead_sequences(conn, broker_id, asks):
    """{(stream, consumer): {seq}} of the messages each consumer gave up on (max deliveries
    or terminated) above the sequence asked, from the dead-letter store."""
    if not asks:
        return {}
    async with conn.cursor() as cur:
        await cur.execute(
            """
            SELECT d.stream, d.consumer, d.stream_seq FROM collector_deadletter d
            JOIN unnest(%s::text[], %s::text[], %s::int8[]) AS k(stream, consumer, floor)
              ON d.stream = k.stream AND d.consumer = k.consumer AND d.stream_seq > k.floor
            WHERE d.broker_id = %s AND d.reason IN ('max_deliveries', 'terminated')
            """,
            [[a[0] for a in asks], [a[1] for a in asks], [a[2] for a in asks], broker_id],
        )
        dead = {}
        for stream, consumer, seq in await cur.fetchall():
            dead.setdefault((stream, consumer), set()).add(seq)
        return dead


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text_of(value):
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def copy_text(rows):
    """Rows in COPY's text format. Values repeat from row to row and round to round (the
    round's time, idle consumers' times, statuses), so each is formatted once."""
    seen = {}

    def text(value):
        key = (type(value), value)  # True == 1 == 1.0, but not in COPY
        try:
            return seen[key]
        except KeyError:
            seen[key] = made = _text_of(value)
            return made
        except TypeError:  # not hashable
            return _text_of(value)

    return "".join("\t".join(map(text, row)) + "\n" for row in rows)


async def _ensure_round_table(conn):
    columns = ", ".join(f"{name} {kind}" for name, kind in ROUND_COLUMNS)
    async with conn.cursor() as cur:
        await cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS lag_round ({columns}) ON COMMIT DELETE ROWS")


ROLLUP_COLUMNS = "samples, unread, lag_sum, lag_max, lag_last, ack_pending_max, redelivered_max, oldest_age_max"


async def write_round(conn, partitions, broker_id, collector_name, lag_round, started, wall_ms, cpu_ms, timings=None):
    """Store one round in one transaction: its samples and the consumers' latest figures.
    Idempotent per (consumer, at). Returns the crossings with their ids, for the webhooks."""
    import time

    timings = {} if timings is None else timings
    mark = [time.perf_counter()]

    def step(name):
        timings[name] = (time.perf_counter() - mark[0]) * 1000
        mark[0] = time.perf_counter()

    await partitions.ensure(conn, [lag_round.at.date()])
    await _ensure_round_table(conn)
    names = ", ".join(name for name, _ in ROUND_COLUMNS)
    sample_columns = ", ".join(SAMPLE_COLUMNS)
    async with conn.cursor() as cur:
        # One COPY of text made here: far cheaper than formatting a row at a time.
        async with cur.copy(f"COPY lag_round ({names}) FROM STDIN") as copy:
            await copy.write(copy_text(lag_round.rows))
        step("load")
        await cur.execute(f"INSERT INTO collector_lagsample ({sample_columns}) SELECT {sample_columns} FROM lag_round "
                          "ON CONFLICT DO NOTHING")
        step("samples")
        # Figures are only ever the latest reading: a consumer not read or gone shows none.
        await cur.execute(
            """
            UPDATE collector_consumer c SET
                sampled_at = u.at, pending = u.pending, ack_pending = u.ack_pending, redelivered = u.redelivered,
                waiting = u.waiting, lag = u.pending + u.ack_pending, oldest_age = u.oldest_age,
                consume_rate = u.consume_rate, produce_rate = u.produce_rate, drain_seconds = u.drain_seconds,
                growing = u.growing, note = coalesce(u.note, ''), status = u.status,
                status_since = CASE WHEN u.status_changed OR c.status_since IS NULL THEN u.at ELSE c.status_since END,
                last_seen = CASE WHEN u.state = 'read' THEN u.at ELSE c.last_seen END,
                gone_at = CASE WHEN u.state = 'gone' THEN coalesce(c.gone_at, u.at)
                               WHEN u.state = 'read' THEN NULL ELSE c.gone_at END,
                config = coalesce(u.config, c.config), created_at = coalesce(u.created_at, c.created_at)
            FROM lag_round u WHERE c.id = u.consumer_id
            """
        )
        step("consumers")
        if lag_round.events:
            await cur.executemany(
                "INSERT INTO collector_consumerevent (consumer_id, at, kind, detail) VALUES (%s, %s, %s, %s)",
                [(ident, lag_round.at, kind, detail) for ident, kind, detail in lag_round.events],
            )
        for crossing in lag_round.crossings:
            await cur.execute(
                """
                INSERT INTO collector_lagcrossing (consumer_id, at, status_from, status_to, lag, oldest_age,
                                                   threshold_id, reason, notified)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '') RETURNING id
                """,
                [crossing["consumer_id"], lag_round.at, crossing["status_from"], crossing["status_to"],
                 crossing["lag"], crossing["oldest_age"], crossing["threshold_id"], crossing["reason"]],
            )
            crossing["id"] = (await cur.fetchone())[0]
            crossing["at"] = lag_round.at
        await cur.execute(
            """
            INSERT INTO collector_laground (collector, started, finished, consumers, unread_streams, wall_ms, cpu_ms, note)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [collector_name, started, datetime.now(timezone.utc), lag_round.consumers, lag_round.unread_streams,
             wall_ms, cpu_ms, lag_round.note],
        )
    await conn.commit()
    step("commit")
    return lag_round.crossings


async def roll_up(conn, before, since=None):
    """Roll the raw samples of every whole minute before `before` (and from `since`, else
    from the last minute rolled, at most a day back) into the per-minute rollup, and those
    minutes into the per-hour rollup. A minute is rolled once (its rows are new or nothing
    is added), so a repeated call adds nothing. Returns the minutes rolled."""
    before = before.replace(second=0, microsecond=0)
    async with conn.cursor() as cur:
        if since is None:
            await cur.execute("SELECT max(minute) FROM collector_lagrollup WHERE minute >= %s",
                              [before - timedelta(days=1)])
            last = (await cur.fetchone())[0]
            since = last + timedelta(minutes=1) if last else before - timedelta(hours=1)
        if since >= before:
            return 0
        await cur.execute(
            f"""
            WITH minutes AS (
                INSERT INTO collector_lagrollup (consumer_id, minute, {ROLLUP_COLUMNS})
                SELECT consumer_id, date_trunc('minute', at), count(*), count(*) FILTER (WHERE state <> 'read'),
                       coalesce(sum(pending + ack_pending), 0), coalesce(max(pending + ack_pending), 0),
                       coalesce((array_agg(pending + ack_pending ORDER BY at DESC))[1], 0),
                       coalesce(max(ack_pending), 0), coalesce(max(redelivered), 0),
                       coalesce(max(greatest(extract(epoch FROM at - oldest_ts), 0)), 0)
                FROM collector_lagsample
                WHERE at >= %s AND at < %s AND consumer_id IN (SELECT id FROM collector_consumer)
                GROUP BY 1, 2
                ON CONFLICT (consumer_id, minute) DO NOTHING
                RETURNING consumer_id, minute, {ROLLUP_COLUMNS}
            )
            INSERT INTO collector_lagrolluphour (consumer_id, hour, {ROLLUP_COLUMNS})
            SELECT consumer_id, date_trunc('hour', minute), sum(samples), sum(unread), sum(lag_sum), max(lag_max),
                   (array_agg(lag_last ORDER BY minute DESC))[1], max(ack_pending_max), max(redelivered_max),
                   max(oldest_age_max)
            FROM minutes GROUP BY 1, 2
            ON CONFLICT (consumer_id, hour) DO UPDATE SET
                samples = collector_lagrolluphour.samples + excluded.samples,
                unread = collector_lagrolluphour.unread + excluded.unread,
                lag_sum = collector_lagrolluphour.lag_sum + excluded.lag_sum,
                lag_max = greatest(collector_lagrolluphour.lag_max, excluded.lag_max),
                lag_last = excluded.lag_last,
                ack_pending_max = greatest(collector_lagrolluphour.ack_pending_max, excluded.ack_pending_max),
                redelivered_max = greatest(collector_lagrolluphour.redelivered_max, excluded.redelivered_max),
                oldest_age_max = greatest(collector_lagrolluphour.oldest_age_max, excluded.oldest_age_max)
            """,
            [since, before],
        )
    await conn.commit()
    return int((before - since).total_seconds() // 60)


async def mark_notified(conn, outcomes):
    if not outcomes:
        return
    async with conn.cursor() as cur:
        await cur.executemany("UPDATE collector_lagcrossing SET notified = %s WHERE id = %s",
                              [(outcome[:500], ident) for ident, outcome in outcomes])
    await conn.commit()


def prune(now=None):
    """Drop raw sample days past their retention, delete old rollups, rounds, events and
    crossings (LagSettings). Returns the dropped partitions."""
    from django.utils import timezone as dj_timezone

    from collector.models import (
        ConsumerEvent,
        LagCrossing,
        LagRollup,
        LagRollupHour,
        LagRound,
        LagSettings,
    )
    from collector.partitions import drop_before

    now = now or dj_timezone.now()
    kept = LagSettings.load()
    dropped = drop_before(LAG_SAMPLES, now - timedelta(hours=kept.raw_retention_hours))
    cutoff = now - timedelta(days=kept.rollup_retention_days)
    LagRollup.objects.filter(minute__lt=cutoff).delete()
    LagRollupHour.objects.filter(hour__lt=cutoff).delete()
    ConsumerEvent.objects.filter(at__lt=cutoff).delete()
    LagCrossing.objects.filter(at__lt=cutoff).delete()
    LagRound.objects.filter(started__lt=now - timedelta(days=2)).delete()
    return dropped
