"""Queries over dead letters, shared by the pages and the JSON API."""
import math
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from collector import keyset
from collector.keyset import BadFilter, decode_cursor
from collector.models import DeadLetter, Event, RetryAttempt, Topic

PAGE = 50
SPARK_POINTS = 30
FILTERS = ("topic", "consumer", "reason", "status", "error", "stream")


def parse_filters(params):
    """The dead-letter filters present in a query string."""
    found = {key: params.get(key, "").strip() for key in FILTERS if params.get(key, "").strip()}
    if found.get("reason") and found["reason"] not in DeadLetter.Reason.values:
        raise BadFilter(f"reason must be one of {', '.join(DeadLetter.Reason.values)}")
    if found.get("status") and found["status"] not in DeadLetter.Status.values:
        raise BadFilter(f"status must be one of {', '.join(DeadLetter.Status.values)}")
    return found


def matching(start, end, filters):
    """Dead letters that died in [start, end) and match `filters`."""
    found = DeadLetter.objects.filter(first_seen__gte=start, first_seen__lt=end)
    for field, column in (("topic", "subject"), ("consumer", "consumer"), ("reason", "reason"),
                          ("status", "status"), ("stream", "stream")):
        if filters.get(field):
            found = found.filter(**{column: filters[field]})
    if filters.get("error"):
        found = found.filter(Q(error__icontains=filters["error"]) | Q(note__icontains=filters["error"]))
    return found


def encode_cursor(letter):
    return keyset.encode_cursor(letter.first_seen, letter.id)


LIST_FIELDS = ["id", "reason", "subject", "dlq_subject", "stream", "consumer", "stream_seq", "error", "note",
               "deliveries", "first_seen", "status", "attempt", "size", "event_id", "retry_of_id"]


def dead_letters(window, filters, before=None, limit=PAGE):
    """Newest first, keyset-paginated on (first_seen, id): `before` is the cursor of the
    last row shown. Returns (rows, more)."""
    found = matching(window.start, window.end, filters)
    if before:
        when, ident = decode_cursor(before)
        found = found.filter(Q(first_seen__lt=when) | Q(first_seen=when, id__lt=ident))
    rows = list(found.only(*LIST_FIELDS).order_by("-first_seen", "-id")[: limit + 1])
    return rows[:limit], len(rows) > limit


SPARK_HOURS_FROM = 12  # windows this long or longer: trend buckets of whole clock hours, read from hourly rows
HOURLY = True  # False: every window from minute rows only (the summary is the same; a test compares)


def summary(window, filters=None, hourly=None):
    """Counts grouped by topic, consumer and reason over the window, each with a trend of at
    most SPARK_POINTS buckets; from the rollups, never the dead letters themselves. From
    SPARK_HOURS_FROM hours on, the buckets are whole clock hours, so the window's whole hours
    are read from the hourly rollup and only its partial hours at the edges from minute rows
    (`hourly` False: minute rows only, the same figures)."""
    filters = filters or {}
    hourly = HOURLY if hourly is None else hourly
    start = window.start.replace(second=0, microsecond=0)
    span = max((window.end - start).total_seconds(), 60)
    where, params = [], {"start": start, "end": window.end}
    for field, column in (("topic", "subject"), ("consumer", "consumer"), ("reason", "reason")):
        if filters.get(field):
            where.append(f"AND {column} = %({field})s")
            params[field] = filters[field]
    extra = " ".join(where)
    if span >= SPARK_HOURS_FROM * 3600:
        origin = start.replace(minute=0)
        hours = math.ceil((window.end - origin).total_seconds() / 3600)
        per_bucket = math.ceil(hours / SPARK_POINTS)
        points = math.ceil(hours / per_bucket)
        params.update({"origin": origin, "width": per_bucket * 3600})
        bucket = "floor(extract(epoch FROM at - %(origin)s) / %(width)s)::int"
        rows_sql = _rows(start, window.end, params, extra, hourly)
    else:
        points = SPARK_POINTS
        params.update({"origin": start, "span": span, "points": points})
        bucket = "floor(extract(epoch FROM at - %(origin)s) / %(span)s * %(points)s)::int"
        rows_sql = _rows(start, window.end, params, extra, False)
    params["last"] = points - 1
    # Grouped in the database, each group's trend as two arrays: a few hundred rows reach Python.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT g, key, sum(n)::bigint, array_agg(bucket), array_agg(n) FROM (
                SELECT GROUPING(subject, consumer, reason) AS g, coalesce(subject, consumer, reason) AS key, bucket,
                       sum(count)::bigint AS n
                FROM (SELECT subject, consumer, reason, least(greatest({bucket}, 0), %(last)s) AS bucket, count
                      FROM {rows_sql} r) b
                GROUP BY GROUPING SETS ((subject, bucket), (consumer, bucket), (reason, bucket))
            ) s GROUP BY 1, 2
            """,
            params,
        )
        rows = cursor.fetchall()
    groups = {"topic": {}, "consumer": {}, "reason": {}}
    names = {0b011: "topic", 0b101: "consumer", 0b110: "reason"}
    for grouped, key, count, buckets, counts in rows:
        spark = [0] * points
        for index, n in zip(buckets, counts, strict=True):
            spark[index] += n
        groups[names[grouped]][key] = {"key": key, "count": count, "spark": spark}
    total = sum(entry["count"] for entry in groups["reason"].values())
    return {"total": total,
            **{group: sorted(found.values(), key=lambda e: (-e["count"], e["key"])) for group, found in groups.items()}}


def _rows(start, end, params, extra, hourly):
    """SQL for the rollup rows of the minutes in [start, end), with their time as `at`:
    hourly rows for the whole hours, minute rows for the partial hours at the edges."""
    columns = "subject, consumer, reason, count"
    minutes = ("SELECT minute AS at, {c} FROM collector_deadletterrollup "
               "WHERE minute >= %({a})s AND minute < %({b})s {x}")
    last = (end - timedelta(microseconds=1)).replace(second=0, microsecond=0)  # the last minute row counted
    first_hour = start if start.minute == 0 else start.replace(minute=0) + timedelta(hours=1)
    end_hour = last.replace(minute=0) + timedelta(hours=1) if last.minute == 59 else last.replace(minute=0)
    if not hourly or first_hour >= end_hour:
        return f"({minutes.format(c=columns, a='start', b='end', x=extra)})"
    params.update({"h1": first_hour, "h2": end_hour})
    return f"""(
        {minutes.format(c=columns, a='start', b='h1', x=extra)}
        UNION ALL
        SELECT hour AS at, {columns} FROM collector_deadletterhourrollup WHERE hour >= %(h1)s AND hour < %(h2)s {extra}
        UNION ALL
        {minutes.format(c=columns, a='h2', b='end', x=extra)}
    )"""


def dead_letter(ident):
    """One dead letter. An advisory can arrive before the collector has stored the message
    it names, so a missing link to the stored event is looked up again here."""
    letter = DeadLetter.objects.select_related("broker", "retry_of").filter(pk=ident).first()
    if letter is not None and letter.event_id is None and letter.stream and letter.stream_seq:
        letter.event_id = (Event.objects.filter(broker_id=letter.broker_id, stream=letter.stream, seq=letter.stream_seq)
                           .values_list("id", flat=True).first())
        if letter.event_id is not None:
            DeadLetter.objects.filter(pk=ident).update(event_id=letter.event_id)
    return letter


def retry_history(letter):
    return list(RetryAttempt.objects.filter(dead_letter=letter).select_related("user", "next_dead_letter")
                .order_by("-attempt"))


def died_again(letter):
    """Later dead letters that were retries of this one."""
    return list(DeadLetter.objects.filter(retry_of=letter).only("id", "first_seen", "reason").order_by("first_seen"))


# --- bulk retries ----------------------------------------------------------------------


def selection_queryset(selection):
    """The retryable dead letters a bulk selection names: {'ids': {id: attempt}} or
    {'filters': {...}, 'from': iso, 'to': iso}."""
    found = DeadLetter.objects.filter(status__in=DeadLetter.RETRYABLE, raw__isnull=False)
    if "ids" in selection:
        return found.filter(pk__in=[int(i) for i in selection["ids"]])
    filters = selection.get("filters") or {}
    if not filters.get("status"):
        # "Everything matching" means the ones not yet retried, unless the filter asks for more.
        found = found.filter(status=DeadLetter.Status.NEW)
    start = datetime.fromisoformat(selection["from"])
    end = datetime.fromisoformat(selection["to"])
    return found & matching(start, end, filters)


def job_chunks(selection, size):
    """{id: attempt seen} chunks of a bulk selection, by ascending id (keyset, no OFFSET).
    A selection of ids carries the attempts its page showed; a filter takes them as they are now."""
    if "ids" in selection:
        items = [(int(k), int(v)) for k, v in selection["ids"].items()]
        for index in range(0, len(items), size):
            yield dict(items[index:index + size])
        return
    last = 0
    while True:
        chunk = list(selection_queryset(selection).filter(pk__gt=last).order_by("pk").values_list("id", "attempt")[:size])
        if not chunk:
            return
        last = chunk[-1][0]
        yield dict(chunk)


def dry_run(selection, sample=20):
    """What a bulk retry would send where: counts per target subject with the stream that
    captures it now (as last seen by the collector), and a few of the dead letters."""
    found = selection_queryset(selection)
    with connection.cursor() as cursor:
        query, params = found.values("subject").query.sql_with_params()
        cursor.execute(f"SELECT subject, count(*) FROM ({query}) q GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 200", params)
        targets = [{"subject": subject, "count": count} for subject, count in cursor.fetchall()]
    streams = dict(Topic.objects.filter(name__in=[t["subject"] for t in targets]).values_list("name", "stream"))
    for target in targets:
        target["stream"] = streams.get(target["subject"]) or ""
    return {"total": sum(t["count"] for t in targets), "targets": targets,
            "sample": list(found.only(*LIST_FIELDS).order_by("-first_seen", "-id")[:sample])}
