"""The audit log page."""
from django.shortcuts import render

from collector.audit import readers
from collector.keyset import BadFilter


def audit_list(request):
    filters = {k: request.GET[k].strip() for k in readers.FILTERS if request.GET.get(k, "").strip()}
    try:
        rows, more = readers.audit(filters, before=request.GET.get("before"))
    except BadFilter as error:
        return render(request, "audit/audit.html", {"entries": [], "filters": filters, "error": str(error)}, status=400)
    older = None
    if more:
        params = request.GET.copy()
        params["before"] = readers.audit_cursor(rows[-1])
        older = params.urlencode()
    return render(request, "audit/audit.html", {"entries": rows, "filters": filters, "older": older})
