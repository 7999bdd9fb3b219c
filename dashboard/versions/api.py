"""`/api/versions`, `/api/versions/<type>` and `/api/versions/<type>/schema?version=`: the
pages' readers as JSON, with the window of the query string. The schema download is the
inferred JSON Schema of one version (to seed a schema registry or an event catalog)."""
import json

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import reverse

from collector.versions import detail, readers
from collector.versions.order import label
from dashboard.presenters import window_json
from dashboard.versions.views import detail_context, list_context, require_viewer


def _error(status, message):
    return JsonResponse({"error": message}, status=status)


def _iso(value):
    return value.isoformat() if value is not None else None


def _plain(value):
    """Datetimes as ISO 8601 text, all the way down."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _version(row):
    return _plain({key: row[key] for key in ("version", "label", "count", "share", "producers", "consumers",
                                              "last_produced", "status", "answer", "drift")})


def versions(request):
    try:
        require_viewer(request)
        context = list_context(request)
    except PermissionDenied as error:
        return _error(403, str(error))
    except readers.BadFilter as error:
        return _error(400, str(error))
    items = [{"type": row["type"], "total": row["total"], "subjects": row["subjects"], "newest": row["newest"],
              "versions": [_version(v) for v in row["versions"]],
              "url": reverse("version_type", args=[row["type"]]), "api": reverse("api_version", args=[row["type"]])}
             for row in context["types"]]
    next_url = None
    if context["next_cursor"]:
        params = request.GET.copy()
        params["after"] = context["next_cursor"]
        next_url = request.path + "?" + params.urlencode()
    return JsonResponse({"window": window_json(request.window), "filters": context["filters"],
                         "statuses": context["by_status"], "types": items, "next": next_url})


def version_type(request, type_name):
    try:
        require_viewer(request)
        context = detail_context(request, type_name)
    except PermissionDenied as error:
        return _error(403, str(error))
    except Http404 as error:
        return _error(404, str(error))
    schema_url = reverse("api_version_schema", args=[type_name])
    return JsonResponse({
        "window": window_json(request.window), "type": type_name, "subjects": context["subjects"],
        "versions": [{**_version(v), "schema": f"{schema_url}?version={v['version']}"} for v in context["versions"]],
        "producers": _plain(context["producer_matrix"]), "consumers": _plain(context["consumer_matrix"]),
        "schemas": {label(v): {"payloads": s.total, "fields": s.rows()} for v, s in context["schemas"].items()},
        "diff": {"left": context["left"], "right": context["right"], "changes": _plain(context["diff"])},
        "drift": [_plain({**d, "event": reverse("event", args=[d["last_event_id"]]) if d["last_event_id"] else None})
                  for d in context["drift"]],
        "chart": context["chart"],
    })


def version_schema(request, type_name):
    """The inferred JSON Schema of `?version=` ('' for the unversioned group), as a download."""
    try:
        require_viewer(request)
    except PermissionDenied as error:
        return _error(403, str(error))
    version = request.GET.get("version")
    if version is None:
        return _error(400, "version= is required ('' for events without a version)")
    document = detail.json_schema(type_name, version)
    if document is None:
        return _error(404, f"No payload of {type_name} {label(version)} has been seen")
    response = HttpResponse(json.dumps(document, indent=2, ensure_ascii=False), content_type="application/schema+json")
    filename = f"{type_name}.{label(version)}.schema.json".replace('"', "")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
