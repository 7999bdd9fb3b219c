import base64

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from collector.events import readers
from collector.models import AuditEntry, RuntimeSettings
from collector.roles import has_role
from dashboard.presenters import page_links, raw_text, sparkline_points

FILTERS = ("type", "version", "producer", "key", "trace", "header", "path", "equals", "contains")


def topic_list(request):
    sort = request.GET.get("sort", "count")
    query = request.GET.get("q", "").strip()
    rows, more = readers.topics(request.window, sort=sort, query=query, broker=request.GET.get("broker"),
                                after=request.GET.get("after"))
    for row in rows:
        row["spark_points"] = sparkline_points(row["spark"])
    next_query = None
    if more and sort == "name":
        next_query = _query(request, after=rows[-1]["name"])
    return render(request, "events/topics.html", {"topics": rows, "more": more, "sort": sort, "query": query,
                                           "stream_notes": readers.stream_notes(),
                                           "next_query": next_query, "sorts": list(readers.TOPIC_SORTS)})


def _query(request, **changes):
    params = request.GET.copy()
    for key in ("before", "after"):
        params.pop(key, None)
    for key, value in changes.items():
        params[key] = value
    return params.urlencode()


def topic_detail(request, name):
    topic = readers.topic(name, request.GET.get("broker"))
    if topic is None:
        raise Http404(f"No topic {name!r} has been seen")
    filters = {key: request.GET.get(key, "").strip() for key in FILTERS if request.GET.get(key, "").strip()}
    try:
        rows, more = readers.events(request.window, subject=name, filters=filters,
                                    before=request.GET.get("before"), after=request.GET.get("after"))
    except readers.BadFilter as error:
        return render(request, "events/topic.html", {"topic": topic, "error": str(error), "filters": filters,
                                              "events": [], "facets": {}}, status=400)
    older, newer = page_links(request, rows, more)
    can_publish = has_role(request.user, "operator", "admin") and not RuntimeSettings.load().read_only
    template_headers = template_text = ""
    if can_publish:
        last = readers.events(_all_time(), subject=name, limit=1)[0]
        if last:
            last = readers.event(last[0].id)
            template_text = raw_text(last.raw) or ""
            template_headers = "\n".join(f"{k}: {v}" for k, v in (last.headers or {}).items()
                                         if k.lower() not in ("nats-msg-id", "eventscope-published-by"))
    return render(request, "events/topic.html", {
        "topic": topic, "events": rows, "filters": filters, "older": older, "newer": newer,
        "facets": readers.topic_facets(name, request.window),
        "can_publish": can_publish, "template_text": template_text, "template_headers": template_headers,
    })


def _all_time():
    from datetime import datetime, timezone

    from dashboard.timewindow import Window

    return Window(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc), None)


def parse_headers(text):
    """`Name: value` lines into a dict; a line without a colon is an error."""
    headers = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header line {number} must look like 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


@require_POST
def publish(request, name):
    """An operator publishes a message to a subject (through a Celery task)."""
    if not has_role(request.user, "operator", "admin"):
        raise PermissionDenied("Only operators publish messages")
    if RuntimeSettings.load().read_only:
        raise PermissionDenied("Eventscope is in read-only mode")
    if readers.topic(name, request.POST.get("broker")) is None:
        raise Http404(f"No topic {name!r} has been seen")
    back = reverse("topic", args=[name])
    try:
        headers = parse_headers(request.POST.get("headers", ""))
    except ValueError as error:
        messages.error(request, f"Not published: {error}")
        return redirect(back)
    payload = request.POST.get("payload", "").encode()
    broker = request.POST.get("broker") or "nats"
    entry = AuditEntry.objects.create(user=request.user, action="publish", target=name,
                                      detail={"broker": broker, "headers": headers, "size": len(payload)})
    from dashboard.events.tasks import publish_message

    result = publish_message.delay(entry.id, name, headers, base64.b64encode(payload).decode())
    try:
        outcome = result.get(timeout=15)
        messages.success(request, f"Published to {name}: {outcome}")
    except Exception as error:  # shown to the operator and kept in the audit log
        messages.error(request, f"Not published to {name}: {error}")
    return redirect(back + "?" + urlencode({"last": request.window.last or "15m"}))
