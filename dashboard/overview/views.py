"""The overview (counts, busiest topics, collectors) and the header search."""
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

from collector.events import readers
from collector.live.summaries import new_dead_letters
from dashboard.presenters import sparkline_points, window_json


def overview(request):
    busiest, _ = readers.topics(request.window, sort="count", limit=10)
    for topic in busiest:
        topic["spark_points"] = sparkline_points(topic["spark"])
    return render(request, "overview/overview.html", {"stats": readers.overview(request.window), "busiest": busiest,
                                                      "dead_letters_new": new_dead_letters()})


def search(request):
    query = request.GET.get("q", "").strip()
    found = readers.find(query)
    if found is None:
        return render(request, "overview/search.html", {"query": query}, status=404 if query else 200)
    kind, value = found
    if kind == "trace":
        try:
            return redirect(reverse("trace", args=[value]))
        except NoReverseMatch:
            return redirect(reverse("events") + "?" + urlencode({"trace": value, "last": "7d"}))
    if kind == "topic":
        return redirect(reverse("topic", args=[value]))
    return redirect(reverse("event", args=[value]))


def api_overview(request):
    stats = readers.overview(request.window)
    stats["last_event"] = stats["last_event"].isoformat() if stats["last_event"] else None
    for collector in stats["collectors"]:
        for key in ("beat", "started", "stalled_since"):
            collector[key] = collector[key].isoformat() if collector[key] else None
    return JsonResponse({"window": window_json(request.window), **stats})
