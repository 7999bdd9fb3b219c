"""Queries over the store, shared by the pages and the JSON API."""
import math
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from collector import keyset
from collector.keyset import BadFilter  # noqa: F401 (pages catch readers.BadFilter)
from collector.models import CollectorHeartbeat, Event, PrunedRange, Topic

# --- the rollups ------------------------------------------------------------------

ROLLUP_COLUMNS = "broker_id, subject, producer, type, version, count, bytes, errors"
HOURLY = True  # False: every window from minute rows only (the figures are the same; a test compares)


NEGATED_COLUMNS = "broker_id, subject, producer, type, version, -count, -bytes, -errors"


def _rollup(window, params, extra="", hourly=True, signed=False):
    """SQL for the rollup rows of the window (the minutes from the window's first minute
    to its end), with their time as `at`: hourly rows for its whole hours, minute rows only for the partial hours at
    its edges (`hourly` False: minute rows only). Sets its bounds in `params`; `extra` is a
    condition on each part.

    `signed` (for sums only: a group's count may come out 0): a partial hour at an edge is
    read as its hour row minus the minute rows of the hour outside the window, when those are
    fewer; for a window ending now they are the minutes still to come, so the last partial
    hour costs one row per topic instead of one per topic and minute."""
    start = _minute(window.start)
    last = window.end - timedelta(microseconds=1)  # the last minute row counted starts before end
    first_hour = _ceil_hour(start)
    end_hour = _minute(last).replace(minute=0) + timedelta(hours=1) if _minute(last).minute == 59 else \
        _minute(last).replace(minute=0)
    params.update({"r_start": start, "r_end": window.end})
    minutes = f"SELECT minute AS at, {ROLLUP_COLUMNS} FROM collector_eventrollup WHERE minute >= %(r_start)s AND minute < %(r_end)s"
    if not (HOURLY and hourly) or first_hour >= end_hour:
        return f"({minutes} {extra})"
    params.update({"r_h1": first_hour, "r_h2": end_hour})
    lead = (f"SELECT minute AS at, {ROLLUP_COLUMNS} FROM collector_eventrollup "
            f"WHERE minute >= %(r_start)s AND minute < %(r_h1)s {extra}")
    tail = (f"SELECT minute AS at, {ROLLUP_COLUMNS} FROM collector_eventrollup "
            f"WHERE minute >= %(r_h2)s AND minute < %(r_end)s {extra}")
    hours, less = "hour >= %(r_h1)s AND hour < %(r_h2)s", []
    if signed:
        now = timezone.now()
        if first_hour - start > timedelta(minutes=30):  # more of the first hour inside the window than outside
            hours, lead = "hour >= %(r_h1)s - interval '1 hour' AND hour < %(r_h2)s", ""
            less.append(f"SELECT minute AS at, {NEGATED_COLUMNS} FROM collector_eventrollup "
                        f"WHERE minute >= %(r_h1)s - interval '1 hour' AND minute < %(r_start)s {extra}")
        outside = max(min(now, end_hour + timedelta(hours=1)) - window.end, timedelta(0))
        if outside < window.end - end_hour:
            hours, tail = hours.replace("hour < %(r_h2)s", "hour <= %(r_h2)s"), ""
            less.append(f"SELECT minute AS at, {NEGATED_COLUMNS} FROM collector_eventrollup "
                        f"WHERE minute >= %(r_end)s AND minute < %(r_h2)s + interval '1 hour' {extra}")
    parts = [part for part in (lead, f"SELECT hour AS at, {ROLLUP_COLUMNS} FROM collector_eventhourrollup "
                                     f"WHERE {hours} {extra}", tail) if part] + less
    return "(" + "\n UNION ALL ".join(parts) + ")"


def _ceil_hour(moment):
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


def overview(window):
    """Counts for the front page: what the collector has seen so far."""
    params = {"start": _minute(window.start)}
    rollup = _rollup(window, params, signed=True)
    with connection.cursor() as cursor:
        # One pass, hash-grouped by producer (a handful of groups): no sort over the window's rows.
        cursor.execute(
            f"""
            SELECT coalesce(sum(count), 0)::bigint, coalesce(sum(bytes), 0)::bigint, coalesce(sum(errors), 0)::bigint,
                   (SELECT count(*) FROM collector_topic WHERE last_seen >= %(start)s),
                   count(*) FILTER (WHERE producer <> '')
            FROM (SELECT producer, sum(count) AS count, sum(bytes) AS bytes, sum(errors) AS errors
                  FROM {rollup} r GROUP BY producer HAVING sum(count) > 0) p
            """,
            params,
        )
        events, size, errors, topics, producers = cursor.fetchone()
        cursor.execute("SELECT max(last_seen), count(*) FROM collector_topic")
        last_event, all_topics = cursor.fetchone()
    return {
        "events": events,
        "bytes": size,
        "errors": errors,
        "topics": topics,
        "producers": producers,
        "all_topics": all_topics,
        "last_event": last_event,
        "collectors": collectors(),
    }


def collectors(stale_after=None):
    from django.conf import settings

    stale_after = stale_after or settings.COLLECTOR_STALE_SECONDS
    now = timezone.now()
    rows = []
    recent = CollectorHeartbeat.objects.filter(beat__gte=now - timedelta(days=1))
    for beat in recent.order_by("-beat")[:20]:
        rows.append({"name": beat.name, "beat": beat.beat, "started": beat.started,
                     "counters": beat.counters, "up": (now - beat.beat).total_seconds() <= stale_after,
                     "stalled": beat.stalled, "stalled_since": beat.stalled_since})
    return rows


def find(query):
    """Where the header search box goes: an event id, message key or trace id."""
    query = query.strip()
    if not query:
        return None
    if query.isdigit():
        event = Event.objects.filter(id=int(query)).only("id").first()
        if event:
            return ("event", event.id)
    for field in ("event_id", "key"):
        event = Event.objects.filter(**{field: query}).order_by("-ts").only("id").first()
        if event:
            return ("event", event.id)
    trace = query.lower()
    if len(trace) in (16, 32) and all(c in "0123456789abcdef" for c in trace):
        from collector.models import TraceSummary

        trace = trace.rjust(32, "0")
        if TraceSummary.objects.filter(trace_id=trace).exists() or Event.objects.filter(trace_id=trace).exists():
            return ("trace", trace)
    if Topic.objects.filter(name=query).exists():
        return ("topic", query)
    return None


# --- topics --------------------------------------------------------------------

TOPIC_SORTS = {
    "name": "t.name ASC",
    "count": "count DESC, t.name ASC",
    "bytes": "bytes DESC, t.name ASC",
    "errors": "errors DESC, t.name ASC",
    "last_seen": "t.last_seen DESC, t.name ASC",
}
TOPIC_PAGE = 200
SPARK_POINTS = 30
SPARK_HOURS_FROM = 12  # windows this long or longer: sparkline buckets of whole hours


def topics(window, sort="count", query="", broker=None, after=None, limit=TOPIC_PAGE):
    """Topics with their traffic in the window, from the rollups (never the raw events). Sorted by name or last seen, the page of topics is chosen first and only
    its rollup rows are read (and it pages by keyset: `after` = last name shown); sorted
    by traffic, the window's rollup is summed per topic once."""
    sort = sort if sort in TOPIC_SORTS else "count"
    where, params = ["TRUE"], {"start": _minute(window.start), "end": window.end, "limit": limit + 1}
    if query:
        where.append("t.name ILIKE %(query)s")
        params["query"] = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if broker:
        where.append("b.name = %(broker)s")
        params["broker"] = broker
    if after and sort == "name":
        where.append("t.name > %(after)s")
        params["after"] = after
    traffic = """
        SELECT broker_id, subject, sum(count)::bigint AS count, sum(bytes)::bigint AS bytes,
               sum(errors)::bigint AS errors
        FROM {rollup} r
        GROUP BY 1, 2
    """
    if sort in ("name", "last_seen"):
        traffic = traffic.format(rollup=_rollup(window, params, "AND subject IN (SELECT name FROM page)"))
        sql = f"""
            WITH page AS (
                SELECT t.* , b.name AS broker_name FROM collector_topic t JOIN collector_broker b ON b.id = t.broker_id
                WHERE {' AND '.join(where)} ORDER BY {TOPIC_SORTS[sort]} LIMIT %(limit)s
            ), r AS ({traffic})
            SELECT t.name, t.stream, t.best_effort, t.first_seen, t.last_seen, t.broker_name,
                   coalesce(r.count, 0), coalesce(r.bytes, 0), coalesce(r.errors, 0)
            FROM page t LEFT JOIN r ON r.broker_id = t.broker_id AND r.subject = t.name
            ORDER BY {TOPIC_SORTS[sort]}
        """
    else:
        traffic = traffic.format(rollup=_rollup(window, params, signed=True))
        sql = f"""
            SELECT t.name, t.stream, t.best_effort, t.first_seen, t.last_seen, b.name,
                   coalesce(r.count, 0) AS count, coalesce(r.bytes, 0) AS bytes, coalesce(r.errors, 0) AS errors
            FROM collector_topic t
            JOIN collector_broker b ON b.id = t.broker_id
            LEFT JOIN ({traffic}) r ON r.broker_id = t.broker_id AND r.subject = t.name
            WHERE {' AND '.join(where)}
            ORDER BY {TOPIC_SORTS[sort]}
            LIMIT %(limit)s
        """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    seconds = max(window.seconds, 1)
    result = [
        {"name": r[0], "stream": r[1], "best_effort": r[2], "first_seen": r[3], "last_seen": r[4], "broker": r[5],
         "count": r[6], "bytes": r[7], "errors": r[8], "rate": r[6] / seconds}
        for r in rows
    ]
    _attach_producers(result, window)
    _attach_sparklines(result, window)
    return result, more


def _attach_producers(topics_, window):
    if not topics_:
        return
    params = {"names": [t["name"] for t in topics_]}
    # Signed: a producer seen in the window is one whose count there, hour rows less the minutes
    # outside, is above 0.
    rollup = _rollup(window, params, "AND subject = ANY(%(names)s)", signed=True)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT subject, producer FROM {rollup} r WHERE producer <> '' GROUP BY 1, 2 "
                       "HAVING sum(count) > 0", params)
        producers = {}
        for subject, producer in cursor.fetchall():
            producers.setdefault(subject, []).append(producer)
    for topic in topics_:
        topic["producers"] = sorted(producers.get(topic["name"], []))


def _minute(moment):
    return moment.replace(second=0, microsecond=0)


def _attach_sparklines(topics_, window):
    """Counts per bucket (SPARK_POINTS over the window) for the topics shown. From
    SPARK_HOURS_FROM hours on, the buckets are whole clock hours (as many per bucket as
    keeps them within SPARK_POINTS), so the hourly rollup answers them."""
    if not topics_:
        return
    start = _minute(window.start)
    span = max((window.end - start).total_seconds(), 60)
    params = {"names": [t["name"] for t in topics_]}
    hourly = span >= SPARK_HOURS_FROM * 3600
    if hourly:
        origin = start.replace(minute=0)
        hours = math.ceil((window.end - origin).total_seconds() / 3600)
        per_bucket = math.ceil(hours / SPARK_POINTS)
        points = math.ceil(hours / per_bucket)
        params.update({"origin": origin, "width": per_bucket * 3600})
        bucket = "floor(extract(epoch FROM at - %(origin)s) / %(width)s)::int"
    else:
        # The rollup is per minute: no more points than minutes, or empty buckets zigzag.
        points = max(2, min(SPARK_POINTS, int(span // 60)))
        params.update({"origin": start, "span": span, "points": points})
        bucket = "least(floor(extract(epoch FROM at - %(origin)s) / %(span)s * %(points)s)::int, %(points)s - 1)"
    # Whole-hour buckets are sums per hour: an edge hour may be its hour row less the minutes outside.
    rollup = _rollup(window, params, "AND subject = ANY(%(names)s)", hourly=hourly, signed=hourly)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT subject, {bucket}, sum(count)::bigint FROM {rollup} r GROUP BY 1, 2", params)
        buckets = {}
        for subject, index, count in cursor.fetchall():
            buckets.setdefault(subject, [0] * points)[min(max(index, 0), points - 1)] += count
    for topic in topics_:
        topic["spark"] = buckets.get(topic["name"], [0] * points)


def topic(name, broker=None):
    found = Topic.objects.select_related("broker").filter(name=name)
    if broker:
        found = found.filter(broker__name=broker)
    return found.order_by("broker__name").first()


def topic_facets(name, window):
    """Types, versions and producers seen on a topic in the window, for the filter menus."""
    with connection.cursor() as cursor:
        params = {"name": name}
        rollup = _rollup(window, params, "AND subject = %(name)s")
        cursor.execute(
            f"SELECT type, version, producer, sum(count)::bigint FROM {rollup} r GROUP BY 1, 2, 3 ORDER BY 4 DESC",
            params,
        )
        rows = cursor.fetchall()
    return {
        "types": sorted({r[0] for r in rows if r[0]}),
        "versions": sorted({r[1] for r in rows if r[1]}),
        "producers": sorted({r[2] for r in rows if r[2]}),
    }


# --- events --------------------------------------------------------------------

EVENT_PAGE = 50
LIST_FIELDS = ["id", "ts", "subject", "stream", "seq", "size", "format", "event_id", "type", "version", "producer",
               "key", "trace_id", "note", "truncated", "headers"]


def encode_cursor(event):
    return keyset.encode_cursor(event.ts, event.id)


def events(window, subject=None, filters=None, before=None, after=None, limit=EVENT_PAGE):
    """Newest first, keyset-paginated on (ts, id): `before`/`after` are cursors of the
    last/first row of the current page. Filters: type, version, producer, key, trace,
    header (`k=v`), path + equals (JSON path into the payload), contains (raw bytes)."""
    filters = filters or {}
    _check_scan_window(window, filters)
    qs = Event.objects.filter(ts__gte=window.start, ts__lt=window.end)
    if subject is not None:
        qs = qs.filter(subject=subject)
    for field in ("type", "version", "producer", "key"):
        if filters.get(field):
            qs = qs.filter(**{field: filters[field]})
    if filters.get("trace"):
        qs = qs.filter(trace_id=filters["trace"].strip().lower().rjust(32, "0"))
    if filters.get("header"):
        name, sep, value = filters["header"].partition("=")
        if not sep or not name.strip():
            raise BadFilter("header filter must look like name=value")
        qs = qs.extra(where=["EXISTS (SELECT 1 FROM jsonb_each_text(collector_event.headers) h "
                             "WHERE lower(h.key) = lower(%s) AND h.value = %s)"], params=[name.strip(), value.strip()])
    if filters.get("path"):
        path = [part for part in filters["path"].strip().lstrip("$").strip(".").split(".") if part]
        if not path:
            raise BadFilter("path must name a field, like customer.id")
        qs = qs.extra(where=["collector_event.payload #>> %s = %s"], params=[path, filters.get("equals", "")])
    if filters.get("contains"):
        qs = qs.extra(where=["position(%s::bytea in collector_event.raw) > 0"],
                      params=[filters["contains"].encode()])
    ascending = False
    if before:
        ts, ident = keyset.decode_cursor(before)
        qs = qs.extra(where=["(collector_event.ts, collector_event.id) < (%s, %s)"], params=[ts, ident])
    elif after:
        ts, ident = keyset.decode_cursor(after)
        qs = qs.extra(where=["(collector_event.ts, collector_event.id) > (%s, %s)"], params=[ts, ident])
        ascending = True
    order = ["ts", "id"] if ascending else ["-ts", "-id"]
    rows = list(qs.only(*LIST_FIELDS).order_by(*order)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if ascending:
        rows.reverse()
    return rows, more


# Filters no index answers: each reads every stored message of the window.
SCAN_FILTERS = ("contains", "path", "header")


def _check_scan_window(window, filters):
    """BadFilter when a scanning filter is asked of a window longer than
    EVENT_SCAN_WINDOW_HOURS: the reason names the filter and the limit."""
    from django.conf import settings

    scanning = [name for name in SCAN_FILTERS if filters.get(name)]
    hours = settings.EVENT_SCAN_WINDOW_HOURS
    if scanning and window.seconds > hours * 3600:
        raise BadFilter(f"the {', '.join(scanning)} filter{'s read' if len(scanning) > 1 else ' reads'} every stored "
                        f"message of the window: narrow it to at most {hours} h "
                        f"(this one is {window.seconds / 3600:.0f} h)")


def event(ident):
    return Event.objects.filter(id=ident).first()


def expired(table, ident):
    """When a row with this id was dropped by retention, or None."""
    return (PrunedRange.objects.filter(table=table, min_id__lte=ident, max_id__gte=ident)
            .order_by("-pruned_at").first())


def neighbours(event_):
    """The previous and next message on the same subject."""
    base = Event.objects.filter(subject=event_.subject, broker_id=event_.broker_id).only("id", "ts")
    older = base.extra(where=["(ts, id) < (%s, %s)"], params=[event_.ts, event_.id]).order_by("-ts", "-id").first()
    newer = base.extra(where=["(ts, id) > (%s, %s)"], params=[event_.ts, event_.id]).order_by("ts", "id").first()
    return older, newer


def exchange_coverage():
    """What the RabbitMQ taps cover, as the collectors' heartbeats report them: per broker,
    whether the firehose feeds it, and the exchanges not covered with the reason."""
    found = {}
    for beat in CollectorHeartbeat.objects.order_by("-beat")[:5]:
        for name, entry in (beat.counters or {}).get("brokers", {}).items():
            if entry.get("kind") != "rabbitmq" or name in found:
                continue
            counters, streams = entry.get("counters") or {}, entry.get("streams") or {}
            found[name] = {
                "name": name, "firehose": bool(counters.get("firehose")),
                "management_api": bool(counters.get("management_api")),
                "tap_full": bool(counters.get("tap_full")), "tap_bytes": counters.get("tap_bytes"),
                "tap_limit": counters.get("tap_limit"),
                "covered": sorted(n for n, state in streams.items() if state.get("observed")),
                "uncovered": sorted((n, state.get("note", "")) for n, state in streams.items()
                                    if not state.get("observed")),
            }
    return [found[name] for name in sorted(found)]


def stream_notes():
    """Streams the collector captures differently (WorkQueue streams come from the core
    tap), as its heartbeats report them."""
    notes = {}
    for beat in CollectorHeartbeat.objects.order_by("-beat")[:5]:
        for name, state in (beat.counters or {}).get("streams", {}).items():
            if state.get("note"):
                notes.setdefault(name, state["note"])
    return sorted(notes.items())
