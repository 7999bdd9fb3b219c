"""`/api/consumers` and `/api/consumers/<stream>/<name>`: the pages' readers as JSON, with
the time window of the query string (`?last=` or `?from=&to=`)."""
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.urls import reverse

from collector.keyset import BadFilter
from dashboard.lag.views import detail_context, list_context, require_viewer
from dashboard.presenters import window_json


def _error(status, message):
    return JsonResponse({"error": message}, status=status)


def _iso(value):
    return value.isoformat() if value is not None else None


def _figures(row):
    return {key: row[key] for key in ("status", "lag", "pending", "ack_pending", "redelivered", "waiting", "oldest_age",
                                      "consume_rate", "produce_rate", "drain_seconds", "growing", "note")}


def consumers(request):
    try:
        require_viewer(request)
        context = list_context(request)
    except PermissionDenied as error:
        return _error(403, str(error))
    except BadFilter as error:
        return _error(400, str(error))
    items = []
    for row in context["consumers"]:
        items.append({
            "broker": row["broker"], "stream": row["stream"], "name": row["name"], "kind": row["kind"],
            **_figures(row), "status_since": _iso(row["status_since"]), "sampled_at": _iso(row["sampled_at"]),
            "gone_at": _iso(row["gone_at"]), "spark": row["spark"],
            "url": reverse("consumer", args=[row["stream"], row["name"]]),
            "api": reverse("api_consumer", args=[row["stream"], row["name"]]),
        })
    next_url = None
    if context["next_cursor"]:
        params = request.GET.copy()
        params["after"] = context["next_cursor"]
        next_url = request.path + "?" + params.urlencode()
    return JsonResponse({"window": window_json(request.window), "sort": context["sort"], "consumers": items,
                         "next": next_url})


def consumer(request, stream, name):
    try:
        require_viewer(request)
        context = detail_context(request, stream, name)
    except PermissionDenied as error:
        return _error(403, str(error))
    except Http404 as error:
        return _error(404, str(error))
    c, account = context["consumer"], context["reconciliation"]
    return JsonResponse({
        "window": window_json(request.window),
        "broker": c.broker.name, "stream": c.stream, "name": c.name, "kind": c.kind, "observer": c.observer,
        "status": c.status, "status_since": _iso(c.status_since), "gone_at": _iso(c.gone_at),
        "sampled_at": _iso(c.sampled_at), "created_at": _iso(c.created_at), "config": c.config,
        "figures": {"lag": c.lag, "pending": c.pending, "ack_pending": c.ack_pending, "redelivered": c.redelivered,
                    "waiting": c.waiting, "oldest_age": c.oldest_age, "consume_rate": c.consume_rate,
                    "produce_rate": c.produce_rate, "drain_seconds": c.drain_seconds, "growing": c.growing,
                    "note": c.note},
        "service": {"name": context["service"], "source": context["service_source"]},
        "history": context["history"],
        "timeline": [{**item, "at": _iso(item["at"])} for item in context["timeline"]],
        "reconciliation": {"as_of": _iso(account.as_of), "complete": account.complete, "total": account.total,
                           "missing": account.missing, "note": account.note, "start_seq": account.start_seq,
                           "last_seq": account.last_seq, "terms": account.rows()},
        "dead_letters": {"count": context["dead_count"],
                         "recent": [{"id": d.id, "first_seen": _iso(d.first_seen), "reason": d.reason,
                                     "stream_seq": d.stream_seq, "url": reverse("dead_letter", args=[d.id])}
                                    for d in context["dead_letters"]]},
        "spans": [{**span, "start": _iso(span["start"])} for span in context["spans"]],
    })
