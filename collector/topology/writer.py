"""The one writer of topology: service instances from registrations, the publish edges per
5 and 15 minutes and hour from each committed batch, and the span pass that turns newly received
spans into per-minute edges. Both merge commutatively: counts
add, instance times take the least / greatest, so several collectors never overwrite
one another and the order batches commit in does not matter."""
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from collector.models.traces import DURATION_BUCKETS_US

# Spans received this long ago are read: a span transaction commits within it (a batch
# of 5,000 takes well under a second). One still open longer is not counted.
SETTLE = timedelta(seconds=5)
# One pass reads at most this much receive time, so a backlog is taken in bounded transactions.
STEP = timedelta(minutes=5)
# Each edge is kept per minute, per 5 and 15 minutes and per hour, so a window reads its whole
# hours, quarters and 5-minute blocks from the coarser rows and only its ragged ends per minute.
WIDTHS = (1, 5, 15, 60)
# The publish edges are read per minute from the events' rollup, per 5 and 15 minutes and hour from here.
PUBLISH_WIDTHS = (5, 15, 60)
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
# Where a first pass starts.
START_BACK = timedelta(hours=1)

_BOUNDS = "ARRAY[" + ", ".join(str(b) for b in DURATION_BUCKETS_US) + "]::bigint[]"
_BUCKETS = "ARRAY[" + ", ".join(
    f"count(*) FILTER (WHERE bucket = {i})" for i in range(len(DURATION_BUCKETS_US) + 1)) + "]::bigint[]"

# A client/server pair is counted once, when the later received of its two spans is read:
# the child's pass when the parent came first (or together), the parent's otherwise.
SPAN_EDGES = f"""
WITH new AS (
    SELECT trace_id, span_id, parent_span_id, service, kind, start, duration_us, error, destination, received_at,
           coalesce(tags->>'messaging.consumer.group.name', '') AS grp
    FROM collector_span WHERE received_at > %(lo)s AND received_at <= %(hi)s
), edges AS (
    SELECT start AS at,
           CASE WHEN kind = 'producer' THEN 'publish' ELSE 'consume' END AS kind,
           CASE WHEN kind = 'producer' THEN service ELSE destination END AS source,
           CASE WHEN kind = 'producer' THEN destination ELSE service END AS target,
           CASE WHEN kind = 'consumer' THEN grp ELSE '' END AS grp, error, duration_us
    FROM new WHERE kind IN ('producer', 'consumer') AND coalesce(destination, '') <> ''
    UNION ALL
    SELECT c.start, 'call', p.service, c.service, '', c.error, c.duration_us
    FROM new c JOIN collector_span p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
    WHERE c.parent_span_id IS NOT NULL AND p.service <> c.service AND p.received_at <= c.received_at
          AND p.kind <> 'producer' AND c.kind <> 'consumer'
    UNION ALL
    SELECT c.start, 'call', p.service, c.service, '', c.error, c.duration_us
    FROM new p JOIN collector_span c ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
    WHERE p.service <> c.service AND c.received_at < p.received_at
          AND p.kind <> 'producer' AND c.kind <> 'consumer'
)
INSERT INTO collector_topologyedgerollup
    (width, minute, kind, source, target, "group", count, errors, duration_sum_us, buckets)
SELECT w, date_bin(make_interval(mins => w), at, TIMESTAMPTZ '2000-01-01 00:00+00'), kind, source, target, grp,
       count(*), count(*) FILTER (WHERE error), sum(duration_us), {_BUCKETS}
FROM (SELECT *, width_bucket(duration_us, {_BOUNDS}) AS bucket FROM edges) bucketed
     CROSS JOIN (VALUES {", ".join(f"({w})" for w in WIDTHS)}) AS widths(w)
GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (width, minute, kind, source, target, "group") DO UPDATE SET
    count = collector_topologyedgerollup.count + EXCLUDED.count,
    errors = collector_topologyedgerollup.errors + EXCLUDED.errors,
    duration_sum_us = collector_topologyedgerollup.duration_sum_us + EXCLUDED.duration_sum_us,
    buckets = ARRAY(SELECT a + b FROM unnest(collector_topologyedgerollup.buckets, EXCLUDED.buckets)
                    WITH ORDINALITY AS t(a, b, i) ORDER BY i)
"""


def span_pass(settle=None, step=None):
    """Add the edges of spans received since the last pass. Returns (edge rows written,
    caught up). Runs in one transaction holding the cursor row, so two collectors take
    turns and each span is read once."""
    settle, step = settle or SETTLE, step or STEP
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        now = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO collector_topologycursor (name, position) VALUES ('spans', %s) ON CONFLICT (name) DO NOTHING",
            [now - START_BACK])
        cursor.execute("SELECT position FROM collector_topologycursor WHERE name = 'spans' FOR UPDATE")
        low = cursor.fetchone()[0]
        cursor.execute("SELECT clock_timestamp()")  # the lock may have been waited for
        high = cursor.fetchone()[0] - settle
        if high <= low:
            return 0, True
        caught_up = high - low <= step
        high = min(high, low + step)
        cursor.execute(SPAN_EDGES, {"lo": low, "hi": high})
        written = cursor.rowcount
        cursor.execute("UPDATE collector_topologycursor SET position = %s WHERE name = 'spans'", [high])
        return written, caught_up


def block_start(ts, width):
    """The start of the `width`-minute block holding `ts` (as date_bin from 2000-01-01 UTC)."""
    step = width * 60
    return _ORIGIN + timedelta(seconds=(int((ts - _ORIGIN).total_seconds()) // step) * step)


def record_publishes(rows):
    """Add a committed batch's new events (those given an id: replays and expired rows
    have none) to the publish edges per 5 and 15 minutes and hour: the same counts the events'
    per-minute rollup got in the batch's transaction. Returns the rows upserted."""
    # By 5 minutes first (one key per event), then the 15- and 60-minute blocks from those:
    # under a microsecond per event in the collector. The blocks start on whole multiples of
    # their width since the epoch, as date_bin from 2000-01-01 UTC does.
    fives = {}
    for row in rows:
        if row.id is None:
            continue
        key = (int(row.ts.timestamp()) // 300, row.broker_id, row.subject, row.producer or "", row.type or "",
               row.version or "")
        entry = fives.get(key)
        if entry is None:
            entry = fives[key] = [0, 0, 0]
        entry[0] += 1
        entry[1] += row.size
        entry[2] += row.note is not None
    sums = {}
    for (five, *rest), (count, size, errors) in fives.items():
        for width in PUBLISH_WIDTHS:
            per = width // 5
            key = (width, datetime.fromtimestamp(five // per * per * 300, UTC), *rest)
            entry = sums.get(key)
            if entry is None:
                entry = sums[key] = [0, 0, 0]
            entry[0] += count
            entry[1] += size
            entry[2] += errors
    if not sums:
        return 0
    keys = sorted(sums)  # key order: two collectors cannot deadlock
    columns = list(zip(*keys))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO collector_topologypublishrollup
                (width, minute, broker_id, subject, producer, type, version, count, bytes, errors)
            SELECT * FROM unnest(%s::int[], %s::timestamptz[], %s::int8[], %s::text[], %s::text[], %s::text[],
                                 %s::text[], %s::int8[], %s::int8[], %s::int8[])
            ON CONFLICT (width, minute, broker_id, subject, producer, type, version) DO UPDATE SET
                count = collector_topologypublishrollup.count + EXCLUDED.count,
                bytes = collector_topologypublishrollup.bytes + EXCLUDED.bytes,
                errors = collector_topologypublishrollup.errors + EXCLUDED.errors
            """,
            [*(list(column) for column in columns), [sums[k][0] for k in keys], [sums[k][1] for k in keys],
             [sums[k][2] for k in keys]])
        return cursor.rowcount


def record_registrations(items):
    """Upsert [(Registration, time)]. The latest announcement of a node decides whether it is
    gone; first and last seen only widen."""
    if not items:
        return 0
    merged = {}
    for registration, at in items:
        key = (registration.service, registration.version, registration.node)
        if key not in merged or at >= merged[key][1]:
            first = min(at, merged[key][2]) if key in merged else at
            merged[key] = (registration, at, first)
        else:
            merged[key] = (merged[key][0], merged[key][1], min(at, merged[key][2]))
    rows = sorted(merged.items())  # key order: two collectors cannot deadlock
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO collector_serviceinstance
                (service, version, node, address, instances, first_seen, last_seen, deregistered)
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::timestamptz[],
                                 %s::timestamptz[], %s::timestamptz[])
            ON CONFLICT (service, version, node) DO UPDATE SET
                first_seen = least(collector_serviceinstance.first_seen, EXCLUDED.first_seen),
                last_seen = greatest(collector_serviceinstance.last_seen, EXCLUDED.last_seen),
                address = CASE WHEN EXCLUDED.last_seen >= collector_serviceinstance.last_seen
                               THEN EXCLUDED.address ELSE collector_serviceinstance.address END,
                instances = CASE WHEN EXCLUDED.last_seen >= collector_serviceinstance.last_seen
                                 THEN EXCLUDED.instances ELSE collector_serviceinstance.instances END,
                deregistered = CASE WHEN EXCLUDED.last_seen >= collector_serviceinstance.last_seen
                                    THEN EXCLUDED.deregistered ELSE collector_serviceinstance.deregistered END
            """,
            [[k[0] for k, _ in rows], [k[1] for k, _ in rows], [k[2] for k, _ in rows],
             [v[0].address for _, v in rows], [v[0].instances for _, v in rows], [v[2] for _, v in rows],
             [v[1] for _, v in rows], [v[1] if v[0].gone else None for _, v in rows]],
        )
        return cursor.rowcount


def prune(before):
    """Drop span and publish edges and instances older than `before` (the span retention)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM collector_topologyedgerollup WHERE minute < %s", [before])
        edges = cursor.rowcount
        cursor.execute("DELETE FROM collector_topologypublishrollup WHERE minute < %s", [before])
        edges += cursor.rowcount
        cursor.execute("DELETE FROM collector_serviceinstance WHERE last_seen < %s", [before])
        return edges + cursor.rowcount
