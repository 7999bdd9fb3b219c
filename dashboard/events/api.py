"""Eventscope's JSON API: the same readers as the pages, the same login and roles
(a session or `Authorization: Bearer <token>`)."""
from django.http import JsonResponse
from django.urls import reverse

from collector.events import readers
from dashboard.events.topics import FILTERS
from dashboard.presenters import event_detail, event_summary, window_json


def _error(status, message, **extra):
    return JsonResponse({"error": message, **extra}, status=status)


def topics(request):
    rows, more = readers.topics(request.window, sort=request.GET.get("sort", "count"),
                                query=request.GET.get("q", ""), broker=request.GET.get("broker"),
                                after=request.GET.get("after"))
    for row in rows:
        row["url"] = reverse("topic", args=[row["name"]])
        for key in ("first_seen", "last_seen"):
            row[key] = row[key].isoformat()
    return JsonResponse({"window": window_json(request.window), "topics": rows, "more": more})


def _event_page(request, subject=None):
    filters = {key: request.GET[key].strip() for key in FILTERS if request.GET.get(key, "").strip()}
    try:
        rows, more = readers.events(request.window, subject=subject, filters=filters,
                                    before=request.GET.get("before"), after=request.GET.get("after"))
    except readers.BadFilter as error:
        return _error(400, str(error))
    next_url = None
    if more and rows and not request.GET.get("after"):
        params = request.GET.copy()
        params["before"] = readers.encode_cursor(rows[-1])
        params.pop("after", None)
        next_url = request.path + "?" + params.urlencode()
    return JsonResponse({"window": window_json(request.window), "events": [event_summary(e) for e in rows], "next": next_url})


def topic_events(request, name):
    if readers.topic(name, request.GET.get("broker")) is None:
        return _error(404, f"no topic {name!r} has been seen")
    return _event_page(request, subject=name)


def events(request):
    return _event_page(request)


def event(request, ident):
    found = readers.event(ident)
    if found is None:
        pruned = readers.expired("collector_event", ident)
        if pruned is not None:
            return _error(410, f"event {ident} was removed by retention", expired=pruned.pruned_at.isoformat())
        return _error(404, f"no event {ident}")
    return JsonResponse(event_detail(found))
