"""Queries over dead letters, shared by the pages and the JSON API."""
from datetime import datetime

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


def summary(window, filters=None):
    """Counts grouped by topic, consumer and reason over the window, each with a trend of
    SPARK_POINTS buckets; from the per-minute rollup, never the dead letters themselves."""
    filters = filters or {}
    start = window.start.replace(second=0, microsecond=0)
    span = max((window.end - start).total_seconds(), 60)
    where, params = ["minute >= %s", "minute < %s"], [start, window.end]
    for field, column in (("topic", "subject"), ("consumer", "consumer"), ("reason", "reason")):
        if filters.get(field):
            where.append(f"{column} = %s")
            params.append(filters[field])
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT subject, consumer, reason,
                   least(greatest(floor(extract(epoch FROM minute - %s) / %s * %s)::int, 0), %s - 1),
                   sum(count)::bigint
            FROM collector_deadletterrollup WHERE {' AND '.join(where)}
            GROUP BY 1, 2, 3, 4
            """,
            [start, span, SPARK_POINTS, SPARK_POINTS, *params],
        )
        rows = cursor.fetchall()
    groups = {"topic": {}, "consumer": {}, "reason": {}}
    for subject, consumer, reason, bucket, count in rows:
        for group, key in (("topic", subject), ("consumer", consumer), ("reason", reason)):
            entry = groups[group].setdefault(key, {"key": key, "count": 0, "spark": [0] * SPARK_POINTS})
            entry["count"] += count
            entry["spark"][bucket] += count
    total = sum(entry["count"] for entry in groups["reason"].values())
    return {"total": total,
            **{group: sorted(found.values(), key=lambda e: (-e["count"], e["key"])) for group, found in groups.items()}}


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
