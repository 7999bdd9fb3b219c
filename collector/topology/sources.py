"""What the graph is built from, one query per source, each over rollups only: the events'
per-minute rollup, the span edges, the consumers the lag sampler keeps, the dead-letter
rollup, registrations and the RED rollup. Never the raw events or spans."""
import json
from datetime import timedelta

from django.db import connection

from collector.models.traces import DURATION_BUCKETS_US


def _minute(value):
    return value.replace(second=0, microsecond=0)


def _rows(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def brokers():
    """{id: (name, kind)}."""
    return {r[0]: (r[1], r[2]) for r in _rows("SELECT id, name, kind FROM collector_broker", [])}


def _published_where(start, end):
    """(SQL, params): the rows of [start, end) from the events' per-minute rollup for the
    window's ragged ends and from the 5-minute and hourly publish rows for the rest."""
    parts = pieces(start, end)
    minutes = [part for part in parts if part[0] == 1]
    coarse = [part for part in parts if part[0] != 1]
    selects, params = [], []
    if minutes:
        selects.append("SELECT {columns} FROM collector_eventrollup WHERE "
                       + " OR ".join("(minute >= %s AND minute < %s)" for _ in minutes))
        params += [value for part in minutes for value in part[1:]]
    if coarse:
        selects.append("SELECT {columns} FROM collector_topologypublishrollup WHERE "
                       + " OR ".join("(width = %s AND minute >= %s AND minute < %s)" for _ in coarse))
        params += [value for part in coarse for value in part]
    return selects, params


def published(start, end):
    """[(broker id, subject, producer, type, version, count, bytes, errors)]: the events' rollup."""
    selects, params = _published_where(start, end)
    if not selects:
        return []
    columns = "broker_id, subject, producer, type, version, count, bytes, errors"
    union = " UNION ALL ".join(select.format(columns=columns) for select in selects)
    return _rows(
        f"""
        SELECT broker_id, subject, producer, type, version, sum(count)::bigint, sum(bytes)::bigint,
               sum(errors)::bigint
        FROM ({union}) rows GROUP BY 1, 2, 3, 4, 5
        """, params)


def published_keys(start, end):
    """published()'s rows without figures (zeros): which producers published to which topics."""
    selects, params = _published_where(start, end)
    if not selects:
        return []
    union = " UNION ".join(select.format(columns="DISTINCT broker_id, subject, producer") for select in selects)
    return [(broker, subject, producer, "", "", 0, 0, 0) for broker, subject, producer in _rows(union, params)]


def _floor(value, minutes):
    value = _minute(value)
    return value - timedelta(minutes=(value.hour * 60 + value.minute) % minutes)


def _ceil(value, minutes):
    floor = _floor(value, minutes)
    return floor if floor == value else floor + timedelta(minutes=minutes)


def pieces(start, end):
    """[(width, from, to)]: the whole hours of [start, end), then whole 5-minute blocks, then
    single minutes, so a window reads as few rows as the rollup widths allow. The first minute
    counts from the window's own minute, as every per-minute rollup does."""
    start = _minute(start)
    if end <= start:
        return []
    result = []

    def split(lo, hi, widths):
        if lo >= hi:
            return
        if not widths:
            result.append((1, lo, hi))
            return
        width, rest = widths[0], widths[1:]
        a, b = _ceil(lo, width), _floor(hi, width)
        if a < b:
            result.append((width, a, b))
            split(lo, a, rest)
            split(b, hi, rest)
        else:
            split(lo, hi, rest)

    split(start, end, [60, 15, 5])
    return sorted(result, key=lambda piece: piece[1])


def span_edges(start, end):
    """[(kind, source, target, group, count, errors, duration sum µs, histogram)] from the span edges."""
    parts = pieces(start, end)
    if not parts:
        return []
    where = " OR ".join("(width = %s AND minute >= %s AND minute < %s)" for _ in parts)
    # One pass with a sum per bucket: cheaper than unnesting every histogram.
    # Each row's bucket counts fit in 32 bits: summed as int they add in int8, not numeric.
    buckets = ", ".join(f"sum(buckets[{i + 1}]::int)" for i in range(len(DURATION_BUCKETS_US) + 1))
    rows = _rows(
        f"""
        SELECT kind, source, target, "group", sum(count::int), sum(errors::int), sum(duration_sum_us)::bigint,
               {buckets}
        FROM collector_topologyedgerollup WHERE {where} GROUP BY 1, 2, 3, 4
        """, [value for part in parts for value in part])
    return [(*row[:7], [int(x or 0) for x in row[7:]]) for row in rows]


def span_edge_keys(start, end):
    """span_edges()'s rows without figures (zeros, no histogram): which edges spans saw."""
    parts = pieces(start, end)
    if not parts:
        return []
    where = " OR ".join("(width = %s AND minute >= %s AND minute < %s)" for _ in parts)
    rows = _rows(f'SELECT DISTINCT kind, source, target, "group" FROM collector_topologyedgerollup WHERE {where}',
                 [value for part in parts for value in part])
    return [(*row, 0, 0, 0, None) for row in rows]


def consumers(start, end):
    """The consumers that existed during the window (not Eventscope's observers), as dicts."""
    rows = _rows(
        """
        SELECT b.name, c.kind, c.stream, c.name, c.config, c.lag, c.status, c.waiting, c.gone_at IS NOT NULL,
               c.first_seen, c.gone_at
        FROM collector_consumer c JOIN collector_broker b ON b.id = c.broker_id
        WHERE NOT c.observer AND c.first_seen < %s AND (c.gone_at IS NULL OR c.gone_at >= %s)
        """, [end, start])
    names = ["broker", "kind", "stream", "name", "config", "lag", "status", "waiting", "gone", "first_seen", "gone_at"]
    result = []
    for row in rows:
        item = dict(zip(names, row))
        if isinstance(item["config"], str):
            item["config"] = json.loads(item["config"])
        result.append(item)
    return result


def stream_topics(broker_streams):
    """{(broker name, stream): [topic names]} of the given (broker name, stream) pairs."""
    if not broker_streams:
        return {}
    streams = sorted({stream for _, stream in broker_streams})
    rows = _rows(
        """
        SELECT b.name, t.stream, t.name FROM collector_topic t JOIN collector_broker b ON b.id = t.broker_id
        WHERE t.stream = ANY(%s)
        """, [streams])
    found = {}
    for broker, stream, name in rows:
        found.setdefault((broker, stream), []).append(name)
    return found


def dead_letters(start, end):
    """{(subject, consumer): count}."""
    rows = _rows(
        """
        SELECT subject, consumer, sum(count)::bigint FROM collector_deadletterrollup
        WHERE minute >= %s AND minute < %s GROUP BY 1, 2
        """, [_minute(start), end])
    return {(r[0], r[1]): int(r[2]) for r in rows}


def registrations(start, end):
    """{service: {"instances": n alive at the window's end, "versions": [..]}}."""
    rows = _rows(
        """
        SELECT service, version,
               coalesce(sum(instances) FILTER (WHERE deregistered IS NULL OR deregistered >= %s), 0)::bigint
        FROM collector_serviceinstance
        WHERE first_seen < %s AND (deregistered IS NULL OR deregistered >= %s) GROUP BY 1, 2
        """, [end, end, start])
    found = {}
    for service, version, instances in rows:
        entry = found.setdefault(service, {"instances": 0, "versions": []})
        entry["instances"] += int(instances)
        if version:
            entry["versions"].append(version)
    return found


def span_health(start, end):
    """{service: (spans, errors)} from the RED rollup."""
    rows = _rows(
        "SELECT service, sum(count::int), sum(errors::int) FROM collector_spanrollup WHERE minute >= %s AND minute < %s GROUP BY 1",
        [_minute(start), end])
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}
