"""The one writer of the trace tables.

`write_spans` stores decoded spans in one transaction: COPY into a staging table, then
one statement that inserts the spans (ON CONFLICT DO NOTHING on trace id, span id and
start) and, from the rows that were really new, updates the trace summaries, the
per-minute RED rollup and the service/operation list. Idempotent: the same spans
written again (an exporter's retry after a lost answer) change nothing.
"""
import json
import logging
from datetime import date, datetime, timedelta, timezone

import orjson

from collector.models.traces import DURATION_BUCKETS_US
from collector.partitions import SPANS, drop_before, midnight

log = logging.getLogger("eventscope.spans")

SPAN_COLUMNS = [
    ("trace_id", "text"),
    ("span_id", "text"),
    ("parent_span_id", "text"),
    ("service", "text"),
    ("operation", "text"),
    ("kind", "text"),
    ("start", "int8"),  # binary COPY: a timestamptz is int8 microseconds since 2000-01-01 UTC
    ("duration_us", "int8"),
    ("status_code", "text"),
    ("status_message", "text"),
    ("error", "bool"),
    # jsonb's binary form is a version byte and the JSON text: encoded here with orjson and
    # sent as bytes, without an adapter object per value.
    ("tags", "bytea"),
    ("resource", "bytea"),
    ("events", "bytea"),
    ("links", "bytea"),
    ("scope", "text"),
    ("message_id", "text"),
    ("destination", "text"),
    ("notes", "text"),
    ("received_at", "timestamptz"),
]
_NAMES = ", ".join(name for name, _ in SPAN_COLUMNS)
_TYPES = [kind for _, kind in SPAN_COLUMNS]
_Y2K_US = 946_684_800_000_000  # 2000-01-01 UTC in microseconds since the Unix epoch
_DAY_US = 86_400_000_000
_UNIX_ORDINAL = date(1970, 1, 1).toordinal()
_JSONB_VERSION = b"\x01"
_EMPTY_LIST = _JSONB_VERSION + b"[]"

# The attribute names OpenTelemetry's messaging conventions used over the years.
MESSAGE_ID_KEYS = ("messaging.message.id", "messaging.message_id")
DESTINATION_KEYS = ("messaging.destination.name", "messaging.destination")

# Spans outside these years cannot be a clock's honest answer and would each create
# a partition of their own: they are rejected with a reason.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_AHEAD = timedelta(days=2)

STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS span_stage ON COMMIT DELETE ROWS AS
SELECT {_NAMES} FROM collector_span WITH NO DATA
"""

_BUCKET_BOUNDS = "ARRAY[" + ", ".join(str(b) for b in DURATION_BUCKETS_US) + "]::bigint[]"
_BUCKET_COUNTS = "ARRAY[" + ", ".join(
    f"count(*) FILTER (WHERE bucket = {i})" for i in range(len(DURATION_BUCKETS_US) + 1)
) + "]::bigint[]"

# One statement, so only new spans feed the summaries and rollups. Rows are merged in
# key order so that two collectors writing the same traces cannot deadlock.
MERGE = f"""
WITH ins AS (
    INSERT INTO collector_span ({_NAMES})
    SELECT {_NAMES} FROM span_stage
    ON CONFLICT DO NOTHING
    RETURNING trace_id, parent_span_id, service, operation, kind, start, duration_us, error
), summary AS (
    INSERT INTO collector_tracesummary
        (trace_id, start, "end", root_service, root_operation, span_count, error_count, services)
    SELECT trace_id, min(start), max(start + duration_us * interval '1 microsecond'),
           coalesce((array_agg(service ORDER BY start) FILTER (WHERE parent_span_id IS NULL))[1], ''),
           coalesce((array_agg(operation ORDER BY start) FILTER (WHERE parent_span_id IS NULL))[1], ''),
           count(*), count(*) FILTER (WHERE error), array_agg(DISTINCT service ORDER BY service)
    FROM ins GROUP BY trace_id ORDER BY trace_id
    ON CONFLICT (trace_id) DO UPDATE SET
        start = least(collector_tracesummary.start, EXCLUDED.start),
        "end" = greatest(collector_tracesummary."end", EXCLUDED."end"),
        -- The root is the span without a parent; it may arrive after its children.
        root_service = CASE WHEN collector_tracesummary.root_service = '' THEN EXCLUDED.root_service
                            ELSE collector_tracesummary.root_service END,
        root_operation = CASE WHEN collector_tracesummary.root_service = '' THEN EXCLUDED.root_operation
                              ELSE collector_tracesummary.root_operation END,
        span_count = collector_tracesummary.span_count + EXCLUDED.span_count,
        error_count = collector_tracesummary.error_count + EXCLUDED.error_count,
        services = ARRAY(SELECT DISTINCT s FROM unnest(collector_tracesummary.services || EXCLUDED.services) s ORDER BY s)
    RETURNING 1
), rollup AS (
    INSERT INTO collector_spanrollup (minute, service, operation, count, errors, duration_sum_us, buckets)
    SELECT date_trunc('minute', start), service, operation, count(*), count(*) FILTER (WHERE error),
           sum(duration_us), {_BUCKET_COUNTS}
    FROM (SELECT *, width_bucket(duration_us, {_BUCKET_BOUNDS}) AS bucket FROM ins) bucketed
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (minute, service, operation) DO UPDATE SET
        count = collector_spanrollup.count + EXCLUDED.count,
        errors = collector_spanrollup.errors + EXCLUDED.errors,
        duration_sum_us = collector_spanrollup.duration_sum_us + EXCLUDED.duration_sum_us,
        buckets = ARRAY(SELECT a + b FROM unnest(collector_spanrollup.buckets, EXCLUDED.buckets)
                        WITH ORDINALITY AS t(a, b, i) ORDER BY i)
    RETURNING 1
), operations AS (
    INSERT INTO collector_spanoperation (service, operation, kind, last_seen)
    SELECT service, operation, kind, max(start) FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (service, operation, kind) DO UPDATE SET last_seen = EXCLUDED.last_seen
    -- Touch the row at most once a minute: every batch of a busy operation would otherwise rewrite it.
    WHERE EXCLUDED.last_seen > collector_spanoperation.last_seen + interval '1 minute'
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM summary), (SELECT count(*) FROM rollup),
       (SELECT count(*) FROM operations)
"""


def _dumps(value):
    """JSON for jsonb: orjson when it can, else the json module (integers wider than 64 bits,
    lone surrogates, which the database then refuses for that span alone). jsonb cannot
    hold NUL characters; an attribute that carries one keeps a visible stand-in."""
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        encoded = json.dumps(value).encode()
    return encoded.replace(b"\\u0000", b"\\ufffd")


async def prepare(conn):
    """Per-connection setup: the staging table (temporary, so each connection has its own)."""
    async with conn.cursor() as cur:
        await cur.execute(STAGE)
    await conn.commit()


def _jsonb(value):
    return _EMPTY_LIST if not value and isinstance(value, list) else _JSONB_VERSION + _dumps(value)


def _text(value):
    return None if value is None else str(value).replace("\x00", "\ufffd")


def _first(attributes, keys):
    for key in keys:
        if attributes.get(key) not in (None, ""):
            return str(attributes[key])
    return None


def storable(spans, now=None):
    """(rows, days, reasons): the COPY tuples of normalised `collector.traces.Span`s, the
    days (as dates) their starts fall on, and one reason per span left out."""
    now = now or datetime.now(timezone.utc)
    rows, days, reasons = [], set(), []
    earliest, latest = int(EARLIEST.timestamp() * 1e6), int((now + LATEST_AHEAD).timestamp() * 1e6)
    # The spans of one request share their resource: encoded once while it repeats.
    last_resource, last_encoded = None, None
    append, add_day = rows.append, days.add
    for span in spans:
        start_us = span.start_us
        if not earliest <= start_us <= latest:
            reasons.append(f"span {span.span_id}: start time {start_us} µs is not a plausible clock reading")
            continue
        add_day(start_us // _DAY_US)
        resource = span.resource
        if resource is not last_resource and resource != last_resource:
            last_resource, last_encoded = resource, _jsonb(resource)
        tags = span.tags
        append((
            span.trace_id, span.span_id, span.parent_span_id, _text(span.service), _text(span.operation), span.kind,
            start_us - _Y2K_US, span.duration_us, span.status_code, _text(span.status_message), span.error,
            _JSONB_VERSION + _dumps(tags), last_encoded, _jsonb(span.events), _jsonb(span.links), _text(span.scope),
            _text(_first(tags, MESSAGE_ID_KEYS)), _text(_first(tags, DESTINATION_KEYS)),
            "; ".join(span.notes) or None, now,
        ))
    return rows, {date.fromordinal(_UNIX_ORDINAL + day) for day in days}, reasons


async def write_spans(conn, spans, partitions):
    """Store `spans` (normalised `collector.traces.Span`) in one transaction and commit.
    Returns (new, reasons): how many spans were new, and why any were left out.
    Idempotent: a span already stored (same trace id, span id and start) is skipped."""
    rows, days, reasons = storable(spans)
    if not rows:
        return 0, reasons
    try:
        await partitions.ensure(conn, days)
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY span_stage ({_NAMES}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_TYPES)
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(MERGE)
            inserted = (await cur.fetchone())[0]
        await conn.commit()
    except BaseException:
        try:
            await conn.rollback()
        except Exception:  # the connection itself may be gone; the caller reconnects
            pass
        raise
    return inserted, reasons


def prune_spans(now=None, days=None):
    """Retention for traces: drop every span partition that ends before now - retention
    (recorded, so links into it answer 410), the summaries and rollups as old, and the
    operations with no span left (last seen before the oldest day kept)."""
    from collector.models.traces import SpanOperation, SpanRollup, TraceSettings, TraceSummary

    now = now or datetime.now(timezone.utc)
    days = TraceSettings.load().span_retention_days if days is None else days
    cutoff = now - timedelta(days=days)
    dropped = drop_before(SPANS, cutoff)
    TraceSummary.objects.filter(end__lt=cutoff).delete()
    SpanRollup.objects.filter(minute__lt=cutoff).delete()
    # last_seen is touched at most once a minute, hence the minute's margin.
    SpanOperation.objects.filter(last_seen__lt=midnight(cutoff.date()) - timedelta(minutes=1)).delete()
    return dropped
