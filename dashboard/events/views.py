from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

from collector.events import readers
from collector.traces import readers as trace_readers
from dashboard.presenters import hexdump, page_links, pretty_payload, raw_text


class Gone(Exception):
    pass


def _load(ident):
    event = readers.event(ident)
    if event is None:
        pruned = readers.expired("collector_event", ident)
        if pruned is not None:
            raise Gone(pruned)
        raise Http404(f"No event {ident}")
    return event


def gone_response(request, pruned, what):
    return render(request, "gone.html", {"pruned": pruned, "what": what}, status=410)


def event_detail(request, ident):
    try:
        event = _load(ident)
    except Gone as gone:
        return gone_response(request, gone.args[0], f"Event {ident}")
    older, newer = readers.neighbours(event)
    trace_url = None
    if event.trace_id:
        try:
            trace_url = reverse("trace", args=[event.trace_id])
        except NoReverseMatch:  # no trace pages: list the events that share the trace
            trace_url = reverse("events") + "?" + urlencode({"trace": event.trace_id, "last": "7d"})
    spans = [
        {"span": span, "url": reverse("trace", args=[span.trace_id]) + "?" + urlencode({"span": span.span_id})}
        for span in trace_readers.spans_for_event(event)
    ]
    return render(request, "events/event.html", {
        "event": event, "older": older, "newer": newer, "trace_url": trace_url, "spans": spans,
        "pretty": pretty_payload(event.payload), "text": raw_text(event.raw), "hex": hexdump(event.raw),
        "headers": sorted((event.headers or {}).items()),
        "sha256": bytes(event.sha256).hex() if event.sha256 else "",
    })


def event_raw(request, ident):
    try:
        event = _load(ident)
    except Gone as gone:
        return gone_response(request, gone.args[0], f"Event {ident}")
    response = HttpResponse(bytes(event.raw), content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="event-{event.id}.bin"'
    return response


def event_list(request):
    """Messages across all topics, filtered (by trace id, key, type ...), newest first."""
    from dashboard.events.topics import FILTERS

    filters = {key: request.GET.get(key, "").strip() for key in FILTERS if request.GET.get(key, "").strip()}
    try:
        rows, more = readers.events(request.window, filters=filters, before=request.GET.get("before"),
                                    after=request.GET.get("after"))
    except readers.BadFilter as error:
        return render(request, "events/events.html", {"error": str(error), "filters": filters, "events": []}, status=400)
    older, newer = page_links(request, rows, more)
    return render(request, "events/events.html", {"events": rows, "filters": filters, "older": older, "newer": newer})
