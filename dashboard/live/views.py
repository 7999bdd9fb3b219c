"""The `/live/` page: the filters come from the query string (so a filtered tail is a
link to share); the rows arrive over the live socket (frontend/src/live.js)."""
from django.shortcuts import render

from collector.live import readers
from collector.live.filters import BadFilter, Filters

ROW_CHOICES = (100, 500, 1000, 2000, 5000)
DEFAULT_ROWS = 1000


def live(request):
    context = {"row_choices": ROW_CHOICES, "rows": DEFAULT_ROWS}
    try:
        filters = Filters.parse(request.GET)
        context["rows"] = _rows(request.GET.get("rows"))
    except BadFilter as error:
        context.update(error=str(error), filters=Filters(**{k: request.GET.get("q" if k == "text" else k, "")[:500]
                                                             for k in ("subject", "service", "type", "version", "text")}))
        return render(request, "live/live.html", context, status=400)
    context.update(filters=filters, rate_cap=readers.rate_cap())
    return render(request, "live/live.html", context)


def _rows(value):
    if value in (None, ""):
        return DEFAULT_ROWS
    try:
        rows = int(value)
    except ValueError:
        raise BadFilter(f"rows={value!r}: a number of rows, one of {', '.join(map(str, ROW_CHOICES))}") from None
    if rows not in ROW_CHOICES:
        raise BadFilter(f"rows={value!r}: one of {', '.join(map(str, ROW_CHOICES))}")
    return rows
