"""Queries over the store, shared by the pages and the JSON API."""
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from collector.models import CollectorHeartbeat, Event, Topic


def overview(window):
    """Counts for the front page: what the collector has seen so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0), coalesce(sum(errors), 0),
                   count(DISTINCT subject), count(DISTINCT nullif(producer, ''))
            FROM collector_eventrollup WHERE minute >= %s AND minute < %s
            """,
            [window.start - timedelta(seconds=window.start.second), window.end],
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
    for beat in CollectorHeartbeat.objects.order_by("-beat")[:20]:
        rows.append({"name": beat.name, "beat": beat.beat, "started": beat.started,
                     "counters": beat.counters, "up": (now - beat.beat).total_seconds() <= stale_after})
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
        event = Event.objects.filter(trace_id=trace.rjust(32, "0")).order_by("-ts").only("id").first()
        if event:
            return ("trace", trace.rjust(32, "0"))
    if Topic.objects.filter(name=query).exists():
        return ("topic", query)
    return None
