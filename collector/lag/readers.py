"""Queries over consumer lag, shared by the pages and the JSON API. The list reads the
consumers' latest figures (one row each) and, for the page shown only, their trend; history
comes from raw samples for short windows and from the rollups for long ones."""
import base64
import json
from collections import Counter
from datetime import timedelta

from django.db import connection

from collector.keyset import BadFilter
from collector.models import (
    Consumer,
    ConsumerEvent,
    DeadLetter,
    LagCrossing,
    LagRound,
    LagSample,
)

PAGE = 50
SPARK_POINTS = 30
# Which table a window is read from: raw samples up to the first length, per-minute rollups
# up to the second, per-hour ones beyond. Sparklines (many consumers, 30 points) switch sooner.
HISTORY_RESOLUTION = (timedelta(hours=6), timedelta(days=7))
SPARK_RESOLUTION = (timedelta(hours=1), timedelta(hours=6))
BUCKET_SECONDS = {"raw": 10, "minute": 60, "hour": 3600}
STATUSES = [value for value, _ in Consumer.Status.choices]

# sort name -> (column, descending); ties and keyset pages go by id.
SORTS = {
    "lag": ("lag", True),
    "oldest": ("oldest_age", True),
    "ack_pending": ("ack_pending", True),
    "redelivered": ("redelivered", True),
    "drain": ("drain_seconds", True),
    "name": ("name", False),
    "stream": ("stream", False),
    "status": ("status", False),
}


def parse_filters(params):
    found = {key: params.get(key, "").strip() for key in ("stream", "status", "q", "broker") if params.get(key, "").strip()}
    if found.get("status") and found["status"] not in STATUSES:
        raise BadFilter(f"status must be one of {', '.join(STATUSES)}")
    return found


def encode_cursor(values):
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(text):
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        raise BadFilter(f"bad page cursor {text!r}") from None
    if not isinstance(values, list) or len(values) != 2 or not isinstance(values[1], int):
        raise BadFilter(f"bad page cursor {text!r}")
    return values


def consumers(filters=None, sort="lag", after=None, limit=PAGE, observer=False):
    """Consumers with their latest figures, sorted on the server and paged by keyset
    (`after` = the cursor of the last row shown). Returns (rows, next cursor or None)."""
    filters = filters or {}
    column, descending = SORTS.get(sort, SORTS["lag"])
    where, params = ["c.observer = %s"], [observer]
    if filters.get("broker"):
        where.append("b.name = %s")
        params.append(filters["broker"])
    if filters.get("stream"):
        where.append("c.stream = %s")
        params.append(filters["stream"])
    if filters.get("status"):
        where.append("c.status = %s")
        params.append(filters["status"])
    if filters.get("q"):
        where.append("c.name ILIKE %s")
        params.append("%" + filters["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    # Numbers sort with the missing ones (gone, not read) last; text sorts as it is.
    numeric = column not in ("name", "stream", "status")
    key = f"coalesce(c.{column}, -1)" if numeric else f"c.{column}"
    order = "DESC" if descending else "ASC"
    if after:
        value, ident = decode_cursor(after)
        where.append(f"({key}, c.id) {'<' if descending else '>'} (%s, %s)")
        params += [value, ident]
    sql = f"""
        SELECT c.id, c.stream, c.name, c.kind, c.status, c.status_since, c.lag, c.pending, c.ack_pending,
               c.redelivered, c.waiting, c.oldest_age, c.consume_rate, c.produce_rate, c.drain_seconds, c.growing,
               c.sampled_at, c.gone_at, c.note, c.config, b.name, {key}
        FROM collector_consumer c JOIN collector_broker b ON b.id = c.broker_id
        WHERE {' AND '.join(where)}
        ORDER BY {key} {order}, c.id {order}
        LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params + [limit + 1])
        found = cursor.fetchall()
    names = ["id", "stream", "name", "kind", "status", "status_since", "lag", "pending", "ack_pending", "redelivered",
             "waiting", "oldest_age", "consume_rate", "produce_rate", "drain_seconds", "growing", "sampled_at",
             "gone_at", "note", "config", "broker"]
    rows = [dict(zip(names, row[:-1])) for row in found[:limit]]
    for row in rows:
        if isinstance(row["config"], str):
            row["config"] = json.loads(row["config"])
    cursor_next = encode_cursor([found[limit - 1][-1], found[limit - 1][0]]) if len(found) > limit else None
    return rows, cursor_next


def status_counts(observer=False):
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM collector_consumer WHERE observer = %s GROUP BY 1", [observer])
        counts = dict(cursor.fetchall())
    return [{"status": status, "count": counts.get(status, 0)} for status in STATUSES]


def streams():
    return list(Consumer.objects.filter(observer=False).order_by("stream").values_list("stream", flat=True).distinct())


def consumer(stream, name, broker=None):
    found = Consumer.objects.select_related("broker").filter(stream=stream, name=name)
    if broker:
        found = found.filter(broker__name=broker)
    return found.order_by("broker_id").first()


def _resolution(window, limits):
    if window.end - window.start <= limits[0]:
        return "raw"
    if window.end - window.start <= limits[1]:
        return "minute"
    return "hour"


def sparklines(ids, window, points=SPARK_POINTS):
    """{consumer id: [max lag per bucket]} over the window, SPARK_POINTS buckets, for the
    consumers of the page shown."""
    if not ids:
        return {}
    span = max((window.end - window.start).total_seconds(), 1)
    resolution = _resolution(window, SPARK_RESOLUTION)
    # No more points than the table has buckets in the window, or empty buckets zigzag.
    points = max(2, min(points, int(span // BUCKET_SECONDS[resolution])))
    if resolution == "raw":
        table, column, value = "collector_lagsample", "at", "pending + ack_pending"
    else:
        table, column, value = ("collector_lagrollup", "minute", "lag_max") if resolution == "minute" else (
            "collector_lagrolluphour", "hour", "lag_max")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT consumer_id, least(floor(extract(epoch FROM {column} - %s) / %s * %s)::int, %s - 1), max({value})
            FROM {table}
            WHERE consumer_id = ANY(%s) AND {column} >= %s AND {column} < %s
            GROUP BY 1, 2
            """,
            [window.start, span, points, points, list(ids), window.start, window.end],
        )
        lines = {ident: [0] * points for ident in ids}
        for ident, bucket, top in cursor.fetchall():
            if top is not None and 0 <= bucket < points:
                lines[ident][bucket] = top
    return lines


def history(consumer_, window):
    """The consumer's lag and oldest age over the window: {"resolution", "t" (epoch seconds),
    "lag", "oldest_age", "pending", "ack_pending"}; None where a sample had no figures."""
    resolution = _resolution(window, HISTORY_RESOLUTION)
    if resolution == "raw":
        sql = """
            SELECT extract(epoch FROM at), pending + ack_pending,
                   CASE WHEN oldest_ts IS NOT NULL THEN greatest(extract(epoch FROM at - oldest_ts), 0)
                        WHEN pending IS NOT NULL THEN 0 END,
                   pending, ack_pending
            FROM collector_lagsample WHERE consumer_id = %s AND at >= %s AND at < %s ORDER BY at
        """
    else:
        table, column = ("collector_lagrollup", "minute") if resolution == "minute" else ("collector_lagrolluphour", "hour")
        sql = f"""
            SELECT extract(epoch FROM {column}), CASE WHEN samples > unread THEN lag_max END,
                   CASE WHEN samples > unread THEN oldest_age_max END, NULL, CASE WHEN samples > unread THEN ack_pending_max END
            FROM {table} WHERE consumer_id = %s AND {column} >= %s AND {column} < %s ORDER BY {column}
        """
    with connection.cursor() as cursor:
        cursor.execute(sql, [consumer_.id, window.start, window.end])
        rows = cursor.fetchall()
    series = {"resolution": resolution, "t": [], "lag": [], "oldest_age": [], "pending": [], "ack_pending": []}
    for t, lag, age, pending, ack_pending in rows:
        series["t"].append(float(t))
        series["lag"].append(lag)
        series["oldest_age"].append(round(float(age), 3) if age is not None else None)
        series["pending"].append(pending)
        series["ack_pending"].append(ack_pending)
    return series


def latest_sample(consumer_, read_only=True):
    found = LagSample.objects.filter(consumer_id=consumer_.id)
    if read_only:
        found = found.filter(state="read")
    return found.order_by("-at").first()


def timeline(consumer_, window, limit=200):
    """Threshold crossings and other events of the consumer in the window, newest first."""
    crossings = list(LagCrossing.objects.filter(consumer=consumer_, at__gte=window.start, at__lt=window.end)
                     .order_by("-at")[:limit])
    events = list(ConsumerEvent.objects.filter(consumer=consumer_, at__gte=window.start, at__lt=window.end)
                  .order_by("-at")[:limit])
    items = [{"at": c.at, "kind": "crossing", "status_from": c.status_from, "status_to": c.status_to,
              "detail": c.reason, "lag": c.lag, "notified": c.notified} for c in crossings]
    items += [{"at": e.at, "kind": e.kind, "detail": e.detail} for e in events]
    return sorted(items, key=lambda item: item["at"], reverse=True)[:limit]


def recent_crossings(limit=20):
    return list(LagCrossing.objects.select_related("consumer").filter(consumer__observer=False).order_by("-at")[:limit])


def dead_letters(consumer_, limit=10):
    found = DeadLetter.objects.filter(stream=consumer_.stream, consumer=consumer_.name, broker_id=consumer_.broker_id)
    return found.count(), list(found.only("id", "first_seen", "reason", "subject", "stream_seq", "status")
                              .order_by("-first_seen", "-id")[:limit])


def consumer_spans(consumer_, window, limit=10):
    """Recent spans of services processing this consumer's messages (consumer spans naming
    its group), newest first."""
    groups = {consumer_.name, (consumer_.config or {}).get("deliver_group") or consumer_.name}
    tags = [json.dumps({"messaging.consumer.group.name": group}) for group in sorted(groups)]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT trace_id, span_id, service, operation, start, duration_us, error FROM collector_span
            WHERE start >= %s AND start < %s AND kind = 'consumer' AND (tags @> %s::jsonb OR tags @> %s::jsonb)
            ORDER BY start DESC LIMIT %s
            """,
            [window.start, window.end, tags[0], tags[-1], limit],
        )
        names = ["trace_id", "span_id", "service", "operation", "start", "duration_us", "error"]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def service_behind(consumer_, spans):
    """(service, how it is known): the services of its consumer spans where there are some,
    else its durable or queue-group name (Go Micro names both after the service)."""
    services = Counter(span["service"] for span in spans if span["service"])
    if services:
        names = [name for name, _ in services.most_common()]
        return ", ".join(names), f"from {sum(services.values())} recent consumer span{'s' if len(spans) != 1 else ''}"
    config = consumer_.config or {}
    if config.get("deliver_group"):
        return config["deliver_group"], "queue-group name (no consumer spans in this window)"
    return config.get("durable") or consumer_.name, "durable name (no consumer spans in this window)"


def last_round():
    return LagRound.objects.order_by("-started").first()
