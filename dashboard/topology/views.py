"""`/topology/` (the graph, drawn in the browser from `/api/topology`), `/services/<name>/`
(one service: what it publishes and consumes, its consumers' lag, dead letters, traces, RED
figures, instances and versions, its neighbourhood) and `/api/topology`."""
import orjson
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from collector.models import ServiceInstance, TopologySettings
from collector.roles import ROLES, has_role
from collector.topology import readers, shared
from collector.traces import readers as trace_readers
from dashboard.presenters import window_json

MAX_HOPS = 5


def require_viewer(request):
    if not has_role(request.user, *ROLES):
        raise PermissionDenied("Your account has no role: ask an admin for one")


def _hops(request):
    try:
        return max(0, min(MAX_HOPS, int(request.GET.get("hops") or 1)))
    except ValueError:
        return None


def topology(request):
    require_viewer(request)
    settings = TopologySettings.load()
    api = reverse("api_topology") + "?" + urlencode(request.window.query())
    return render(request, "topology/topology.html", {
        "api_url": api, "service_url": reverse("service", args=["__name__"]), "settings": settings,
        "events_url": reverse("topics"), "traces_url": reverse("traces"),
    })


def api_topology(request):
    """`GET /api/topology?last=…` (or `from=&to=`): nodes and edges with their figures and
    sources; `?node=<id>&hops=N` keeps that node's neighbourhood; `?compare=0` leaves out
    the comparison with the window before (no `change` marks)."""
    if not has_role(request.user, *ROLES):
        return JsonResponse({"error": "Your account has no role: ask an admin for one"}, status=403)
    hops = _hops(request)
    if hops is None:
        return JsonResponse({"error": "hops must be a whole number"}, status=400)
    window = request.window
    settings = TopologySettings.load()
    data, store = shared.shared_graph(window.start, window.end, compare=request.GET.get("compare") != "0",
                                       settings=settings)
    head = orjson.dumps({"window": window_json(window), "collapse_above": settings.collapse_above})
    if request.GET.get("node"):
        body = orjson.dumps(readers.neighbourhood(data, request.GET["node"], hops))
    else:
        body = store.get("json")
        if body is None:
            body = store["json"] = orjson.dumps(data)
    # One object: the window and settings, then the graph's nodes and edges (encoded once per shared answer).
    return HttpResponse(head[:-1] + b"," + body[1:], content_type="application/json")


def service(request, name):
    require_viewer(request)
    window = request.window
    data, _ = shared.shared_graph(window.start, window.end)
    ident = f"service:{name}"
    node = next((n for n in data["nodes"] if n["id"] == ident), None)
    nodes = {n["id"]: n for n in data["nodes"]}
    publishes = [dict(e, topic=nodes[e["target"]]) for e in data["edges"] if e["kind"] == "publish" and e["source"] == ident]
    groups = [e["source"] for e in data["edges"] if e["kind"] == "member" and e["target"] == ident]
    consumes = [dict(e, topic=nodes[e["source"]], group=nodes.get(e["target"]) if e["target"] in groups else None)
                for e in data["edges"] if e["kind"] == "consume" and (e["target"] == ident or e["target"] in groups)]
    calls = [dict(e, other=nodes[e["target"] if e["source"] == ident else e["source"]],
                  outgoing=e["source"] == ident)
             for e in data["edges"] if e["kind"] == "call" and ident in (e["source"], e["target"])]
    instances = ServiceInstance.objects.filter(service=name, first_seen__lt=window.end).exclude(
        deregistered__lt=window.start).order_by("version", "node")
    traces = trace_readers.search(window, trace_readers.Search(service=name, limit=20))
    red = trace_readers.red(window, service=name)
    window_query = urlencode(window.query())
    return render(request, "topology/service.html", {
        "name": name, "node": node, "publishes": publishes, "consumes": consumes, "calls": calls,
        "groups": [nodes[g] for g in groups], "instances": instances, "traces": traces, "red": red,
        "dead_letters": sum(e["dead_letters"] for e in consumes),
        "api_url": reverse("api_topology") + "?" + urlencode({**window.query(), "node": ident, "hops": 2}),
        "window_query": window_query, "service_url": reverse("service", args=["__name__"]),
    }, status=200 if node or instances else 404)
