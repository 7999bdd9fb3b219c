"""Trace pages: search, the waterfall, raw JSON, the RED view, comparing two traces,
and signed read-only share links to one trace."""
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from collector.models import AuditEntry, RuntimeSettings
from collector.models.traces import ShareLink, TraceSettings
from collector.roles import has_role
from collector.traces import readers
from dashboard.timewindow import Window

SHARE_SALT = "eventscope.traces.share"
SHARE_CHOICES = [("1h", 1), ("24h", 24), ("7d", 24 * 7)]  # label, hours


def _search_query(params):
    return readers.Search(
        service=params.get("service", "").strip(),
        operation=params.get("operation", "").strip(),
        tags=readers.parse_tags(params.getlist("tags")),
        min_duration_us=readers.parse_duration_us(params.get("minDuration")),
        max_duration_us=readers.parse_duration_us(params.get("maxDuration")),
        errors_only=params.get("error") in ("1", "on", "true"),
        limit=_limit(params.get("limit", "").strip()),
    )


def _limit(text, maximum=1000):
    if not text:
        return readers.SEARCH_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise readers.BadQuery(f"limit={text!r}: from 1 to {maximum} traces")
    return int(text)


# The waterfall page loads at most this many spans; "Load more spans" fetches the next ones.
SPAN_PAGE = 2000


_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def span_cursor(span):
    """`<start in µs>_<span id>`, exact (a float timestamp can be a microsecond off)."""
    return f"{(span.start - _EPOCH) // timedelta(microseconds=1)}_{span.span_id}"


def parse_span_cursor(text):
    """(start, span id) from a span cursor, or BadQuery."""
    micros, sep, span_id = (text or "").partition("_")
    try:
        if sep and micros.isdigit() and readers.HEX.match(span_id):
            return _EPOCH + timedelta(microseconds=int(micros)), span_id
    except OverflowError:
        pass
    raise readers.BadQuery(f"after={text!r} is not a span cursor")


def span_page(summary, after_text=None):
    """(spans, next cursor or None): SPAN_PAGE spans by start, after the cursor if given."""
    after = parse_span_cursor(after_text) if after_text else None
    spans = readers.spans(summary.trace_id, summary, after=after, limit=SPAN_PAGE + 1)
    if len(spans) > SPAN_PAGE:
        return spans[:SPAN_PAGE], span_cursor(spans[SPAN_PAGE - 1])
    return spans, None


def _more_url(json_url, cursor):
    return f"{json_url}?{urlencode({'after': cursor})}" if cursor else None


def human_us(us):
    """A duration for people: µs below a millisecond, ms below a second, else seconds."""
    if us is None:
        return "—"
    if abs(us) < 1000:
        return f"{us} µs"
    if abs(us) < 1_000_000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1_000_000:.2f} s"


def trace_window(summary):
    """An absolute window around a trace, so its link keeps working as time passes."""
    return {"from": (summary.start - timedelta(minutes=1)).isoformat(timespec="seconds"),
            "to": (summary.end + timedelta(minutes=1)).isoformat(timespec="seconds")}


def trace_url(summary, span_id=None):
    query = trace_window(summary)
    if span_id:
        query["span"] = span_id
    return reverse("trace", args=[summary.trace_id]) + "?" + urlencode(query)


def trace_list(request):
    """Search by service, operation, tags, duration and errors within the URL's time window."""
    error = None
    try:
        query = _search_query(request.GET)
        results = readers.search(request.window, query)
    except readers.BadQuery as bad:
        query, results, error = readers.Search(), [], str(bad)
    longest = max((r.duration_us for r in results), default=0) or 1
    rows = [{"summary": r, "url": trace_url(r), "duration_us": r.duration_us, "duration": human_us(r.duration_us),
             "bar": max(1, round(100 * r.duration_us / longest))} for r in results]
    services = readers.services()
    operations = [name for name, _ in readers.operations(query.service)] if query.service else []
    context = {"rows": rows, "query": query, "error": error, "services": services,
               "operations": sorted(set(operations)), "scatter": _scatter(rows, request.window, longest),
               "tags_text": " ".join(request.GET.getlist("tags"))}
    return render(request, "traces/traces.html", context, status=400 if error else 200)


def _scatter(rows, window, longest, width=800, height=160, pad=8):
    """Points of duration over time for the search results' SVG."""
    span = max(window.seconds, 1)
    points = []
    for row in rows:
        summary = row["summary"]
        x = pad + (width - 2 * pad) * (summary.start - window.start).total_seconds() / span
        y = height - pad - (height - 2 * pad) * row["duration_us"] / longest
        points.append({"x": round(x, 1), "y": round(y, 1), "url": row["url"], "error": summary.error_count > 0,
                       "r": 3 + min(5, summary.span_count // 20),
                       "title": f"{summary.root_service} {summary.root_operation} {row['duration_us'] / 1000:.1f} ms"})
    return {"width": width, "height": height, "points": points}


def _load_trace(request, trace_id, paged=False):
    """(summary, spans, next cursor) or a 404/410 response; `paged` reads one SPAN_PAGE."""
    ident = readers.normalise_trace_id(trace_id)
    summary = readers.summary(ident) if ident else None
    if summary is None:
        gone = readers.pruned(request.window) if ident and not request.window.last else None
        if gone is not None:
            return None, render(request, "gone.html", {"pruned": gone, "what": f"Trace {ident}"}, status=410)
        events = readers.events_of_trace(ident) if ident else []
        if events:
            # Events carried the trace context but no spans arrived: show what is known.
            return None, render(request, "traces/trace_events.html", {"trace_id": ident, "events": events})
        raise Http404(f"No trace {trace_id}")
    if paged:
        return (summary, *span_page(summary)), None
    return (summary, readers.spans(ident, summary), None), None


def trace_data(summary, spans, with_events=True, more=None):
    """The waterfall's data: times in µs from the trace's start; `more` is the URL of the
    next page of spans (the same shape, its `spans` to add) when there are more."""
    origin = int(summary.start.timestamp() * 1_000_000)
    events = readers.events_for_spans(summary.trace_id, spans) if with_events else {}
    hops = readers.hops(summary.trace_id, spans) if with_events else {}
    return {
        "trace_id": summary.trace_id,
        "start_us": origin,
        "duration_us": summary.duration_us,
        "span_count": summary.span_count,
        "more": more,
        "root": {"service": summary.root_service, "operation": summary.root_operation},
        "spans": [{
            "id": s.span_id, "parent": s.parent_span_id, "service": s.service, "operation": s.operation,
            "kind": s.kind, "start": int(s.start.timestamp() * 1_000_000) - origin, "duration": s.duration_us,
            "error": s.error, "status": {"code": s.status_code, "message": s.status_message},
            "tags": s.tags, "resource": s.resource, "events": s.events, "links": s.links, "scope": s.scope,
            "notes": s.notes, "message_id": s.message_id, "destination": s.destination,
            "stored_events": [{"url": reverse("event", args=[ident]), "subject": subject}
                              for ident, subject in events.get(s.span_id, [])],
            "hops": [{"trace_id": h.trace_id, "span_id": h.span_id, "service": h.service, "operation": h.operation,
                      "kind": h.kind, "url": reverse("trace", args=[h.trace_id]) + "?span=" + h.span_id}
                     for h in hops.get(s.span_id, [])],
        } for s in spans],
    }


def trace_detail(request, trace_id):
    """The waterfall of the first SPAN_PAGE spans; "Load more spans" fetches the rest a page at a time."""
    loaded, response = _load_trace(request, trace_id, paged=True)
    if response:
        return response
    summary, spans, cursor = loaded
    settings_ = TraceSettings.load()
    can_share = (settings_.share_links and has_role(request.user, "operator", "admin")
                 and not RuntimeSettings.load().read_only)
    json_url = reverse("trace_json", args=[summary.trace_id])
    return render(request, "traces/trace.html", {
        "summary": summary, "data": trace_data(summary, spans, more=_more_url(json_url, cursor)),
        "span_count": summary.span_count, "spans_shown": len(spans),
        "duration": human_us(summary.duration_us), "events": readers.events_of_trace(summary.trace_id),
        "permalink": trace_url(summary), "json_url": json_url,
        "can_share": can_share, "share_choices": SHARE_CHOICES, "shared": False,
    })


def trace_json(request, trace_id):
    """The trace as JSON, offered as a download: every span; with `?after=<cursor>`, the
    next SPAN_PAGE spans after it (what "Load more spans" fetches)."""
    if request.GET.get("after"):
        ident = readers.normalise_trace_id(trace_id)
        summary = readers.summary(ident) if ident else None
        if summary is None:
            raise Http404(f"No trace {trace_id}")
        return _span_page_json(request, summary, reverse("trace_json", args=[ident]), with_events=True)
    loaded, response = _load_trace(request, trace_id)
    if response:
        return response
    summary, spans, _ = loaded
    response = JsonResponse(trace_data(summary, spans), json_dumps_params={"ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="trace-{summary.trace_id}.json"'
    return response


def _span_page_json(request, summary, json_url, with_events):
    try:
        spans, cursor = span_page(summary, request.GET["after"])
    except readers.BadQuery as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(trace_data(summary, spans, with_events=with_events, more=_more_url(json_url, cursor)),
                        json_dumps_params={"ensure_ascii": False})


def red(request):
    """Rate, errors and duration percentiles per service and operation (Jaeger's Monitor tab)."""
    service = request.GET.get("service", "").strip()
    rows = readers.red(request.window, service or None)
    for row in rows:
        for key in ("mean", "p50", "p95", "p99"):
            row[key] = human_us(None if row[key + "_us"] is None else int(row[key + "_us"]))
        row["error_percent"] = f"{100 * row['error_rate']:.1f} %"
    return render(request, "traces/trace_red.html", {"rows": rows, "service": service, "services": readers.services()})


def compare(request):
    """Two traces side by side: spans in one and not the other, and duration differences."""
    ids = [readers.normalise_trace_id(request.GET.get(key, "")) for key in ("a", "b")]
    summaries = [readers.summary(ident) if ident else None for ident in ids]
    rows = []
    if all(summaries):
        rows = readers.compare(readers.spans(ids[0], summaries[0]), readers.spans(ids[1], summaries[1]))
        for row in rows:
            row.update(mean_a=human_us(row["mean_a_us"]), mean_b=human_us(row["mean_b_us"]),
                       delta=human_us(row["delta_us"]))
    return render(request, "traces/trace_compare.html", {"a": summaries[0], "b": summaries[1], "rows": rows,
                                                  "a_id": request.GET.get("a", ""), "b_id": request.GET.get("b", "")})


# --- share links -------------------------------------------------------------------


@require_POST
def share_create(request, trace_id):
    """An operator makes a signed, expiring, read-only link to this one trace; the link is
    recorded (ShareLink) so admins can list and revoke it."""
    settings_ = TraceSettings.load()
    if not settings_.share_links:
        raise PermissionDenied("Share links are turned off")
    if not has_role(request.user, "operator", "admin"):
        raise PermissionDenied("Only operators make share links")
    if RuntimeSettings.load().read_only:
        raise PermissionDenied("Eventscope is in read-only mode: no share links are made")
    ident = readers.normalise_trace_id(trace_id)
    summary = readers.summary(ident) if ident else None
    if summary is None:
        raise Http404(f"No trace {trace_id}")
    hours = dict((label, h) for label, h in SHARE_CHOICES).get(request.POST.get("expires"), 24)
    hours = min(hours, settings_.share_link_max_days * 24)
    link = ShareLink.objects.create(trace_id=ident, trace_start=summary.start, trace_end=summary.end,
                                    created_by=request.user, expires=timezone.now() + timedelta(hours=hours))
    token = signing.dumps({"l": link.pk, "t": ident}, salt=SHARE_SALT, compress=True)
    url = reverse("trace_share", args=[token])
    AuditEntry.objects.create(user=request.user, action="share trace", target=ident,
                              detail={"link": link.pk, "expires": int(link.expires.timestamp())}, result="link made")
    return render(request, "traces/trace_shared.html", {"summary": summary, "url": url, "hours": hours,
                                                 "back": trace_url(summary)})


def _shared_link(token):
    """The ShareLink a token opens, or PermissionDenied saying why not. The limits are
    checked now, at use: revocation, the link's own expiry and today's longest life."""
    settings_ = TraceSettings.load()
    if not settings_.share_links:
        raise PermissionDenied("Share links are turned off")
    try:
        payload = signing.loads(token, salt=SHARE_SALT)
    except signing.BadSignature:
        raise PermissionDenied("This share link is not valid") from None
    link = ShareLink.objects.filter(pk=payload.get("l"), trace_id=payload.get("t")).first()
    if link is None:
        raise PermissionDenied("This share link is not valid")
    if link.revoked is not None:
        raise PermissionDenied("This share link was revoked")
    if link.ends(settings_.share_link_max_days) <= timezone.now():
        raise PermissionDenied("This share link has expired")
    return link


def _shared_summary(link):
    """(summary, None) or (None, the 410 response when retention removed the trace)."""
    summary = readers.summary(link.trace_id)
    if summary is not None:
        return summary, None
    gone = readers.pruned(Window(link.trace_start, link.trace_end + timedelta(seconds=1), None))
    if gone is None:
        raise Http404("The shared trace is no longer stored")
    return None, gone


def shared_trace(request, token):
    link = _shared_link(token)
    summary, gone = _shared_summary(link)
    if gone is not None:
        return render(request, "gone.html", {"pruned": gone, "what": f"Shared trace {link.trace_id}"}, status=410)
    spans, cursor = span_page(summary)
    json_url = reverse("trace_share_json", args=[token])
    return render(request, "traces/trace.html", {
        "summary": summary, "data": trace_data(summary, spans, with_events=False, more=_more_url(json_url, cursor)),
        "span_count": summary.span_count, "spans_shown": len(spans), "duration": human_us(summary.duration_us),
        "permalink": reverse("trace_share", args=[token]), "json_url": json_url,
        "can_share": False, "shared": True,
    })


def shared_trace_json(request, token):
    link = _shared_link(token)
    summary, gone = _shared_summary(link)
    if gone is not None:
        return JsonResponse({"error": f"trace {link.trace_id} was removed by retention",
                             "expired": gone.pruned_at.isoformat()}, status=410)
    if request.GET.get("after"):
        return _span_page_json(request, summary, reverse("trace_share_json", args=[token]), with_events=False)
    response = JsonResponse(trace_data(summary, readers.spans(link.trace_id, summary), with_events=False))
    response["Content-Disposition"] = f'attachment; filename="trace-{link.trace_id}.json"'
    return response
