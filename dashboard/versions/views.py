"""`/versions/` (every type with its versions, status and answer) and `/versions/<type>/`
(share chart, matrices, schemas, the diff between two versions, drift and examples). Both
read the versions tables only; the chart's series reach the page as a json_script block,
drawn by frontend/src/versions.js."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from collector.roles import ROLES, has_role
from collector.versions import answer, detail, readers
from collector.versions.order import label

BADGES = {answer.CURRENT: "ok", answer.SAFE: "ok", answer.SUPERSEDED: "warn", answer.BLOCKED: "warn",
          answer.DRIFTING: "error", answer.UNVERSIONED: "muted"}


def require_viewer(request):
    """A user in no group sees no data."""
    if not has_role(request.user, *ROLES):
        raise PermissionDenied("Your account has no role: ask an admin for one")


def type_url(type_, window):
    return f"{reverse('version_type', args=[type_])}?{urlencode(window.query())}"


def list_context(request):
    """What /versions/ and /api/versions show; raises readers.BadFilter."""
    filters = readers.parse_filters(request.GET)
    rows, next_cursor, by_status = readers.version_list(request.window, filters, after=request.GET.get("after"))
    for row in rows:
        row["url"] = type_url(row["type"], request.window)
        for version in row["versions"]:
            version["badge"] = BADGES.get(version["status"], "muted")
    return {"filters": filters, "types": rows, "next_cursor": next_cursor, "by_status": by_status}


def version_list(request):
    require_viewer(request)
    try:
        context = list_context(request)
    except readers.BadFilter as error:
        return render(request, "versions/list.html", {"error": str(error), "types": [], "filters": {},
                                                      "statuses": answer.STATUSES}, status=400)
    next_query = None
    if context["next_cursor"]:
        params = request.GET.copy()
        params["after"] = context["next_cursor"]
        next_query = params.urlencode()
    first_query = None
    if request.GET.get("after"):
        params = request.GET.copy()
        params.pop("after")
        first_query = params.urlencode()
    counts = [{"status": s, "count": context["by_status"].get(s, 0), "badge": BADGES[s]} for s in answer.STATUSES]
    return render(request, "versions/list.html", {
        **context, "statuses": answer.STATUSES, "status_counts": counts, "next_query": next_query,
        "first_query": first_query,
    })


def diff_pair(request, order):
    """(left, right) versions to compare: from the query string, else the two newest."""
    real = [v for v in order if v] or order
    left, right = request.GET.get("left"), request.GET.get("right")
    if left not in order:
        left = real[-2] if len(real) >= 2 else (real[0] if real else None)
    if right not in order:
        right = real[-1] if real else None
    return left, right


def detail_context(request, type_):
    found = detail.type_detail(request.window, type_)
    if found is None:
        raise Http404(f"No event of type {type_} has been stored")
    left, right = diff_pair(request, found["order"])
    found["left"], found["right"] = left, right
    found["left_label"], found["right_label"] = label(left or ""), label(right or "")
    found["diff"] = detail.field_diff(found["shapes"], left, right) if left is not None and right is not None else []
    found["chart"] = {**detail.chart(request.window, type_, found["subjects"]),
                      "window": {"from": request.window.start.timestamp(), "to": request.window.end.timestamp()}}
    return found


def version_detail(request, type_name):
    require_viewer(request)
    context = detail_context(request, type_name)
    for version in context["versions"]:
        version["badge"] = BADGES.get(version["status"], "muted")
        version["schema_url"] = reverse("api_version_schema", args=[type_name]) + "?" + urlencode(
            {"version": version["version"]})
    schema_rows = [(label(v), context["schemas"][v].rows(), context["schemas"][v].total)
                   for v in context["order"] if v in context["schemas"]]
    return render(request, "versions/type.html", {
        **context, "schema_rows": schema_rows, "version_labels": [(v, label(v)) for v in context["order"]],
        "api_url": reverse("api_version", args=[type_name]) + "?" + urlencode(request.window.query()),
    })
