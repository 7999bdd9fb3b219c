"""The audit log page."""
from django.shortcuts import render

from collector.audit import readers
from collector.keyset import BadFilter


def change_lines(detail):
    """Readable lines for the fields an admin change touched ("name: old → new")."""
    changes = (detail or {}).get("changes") if isinstance(detail, dict) else None
    if not isinstance(changes, dict):
        return []
    lines = []
    for name, change in changes.items():
        if isinstance(change, dict) and ("from" in change or "to" in change):
            lines.append(f"{name}: {change.get('from')!r} → {change.get('to')!r}")
        elif isinstance(change, dict) and ("added" in change or "removed" in change):
            parts = [f"+{item}" for item in change.get("added", [])] + [f"−{item}" for item in change.get("removed", [])]
            lines.append(f"{name}: {', '.join(parts)}")
        elif name == "deleted" and isinstance(change, dict):
            lines.append("deleted: " + ", ".join(f"{key}={value!r}" for key, value in change.items()))
        else:
            lines.append(f"{name}: {change}")
    return lines


def audit_list(request):
    filters = {k: request.GET[k].strip() for k in readers.FILTERS if request.GET.get(k, "").strip()}
    try:
        rows, more = readers.audit(filters, before=request.GET.get("before"))
    except BadFilter as error:
        return render(request, "audit/audit.html", {"entries": [], "filters": filters, "error": str(error)}, status=400)
    for row in rows:
        row.change_lines = change_lines(row.detail)
    older = None
    if more:
        params = request.GET.copy()
        params["before"] = readers.audit_cursor(rows[-1])
        older = params.urlencode()
    return render(request, "audit/audit.html", {"entries": rows, "filters": filters, "older": older})
