from django.urls import NoReverseMatch, reverse

from dashboard import timewindow

NAVIGATION = [
    ("Topology", "topology"),
    ("Topics", "topics"),
    ("Consumers", "consumers"),
    ("Versions", "versions"),
    ("Dead letters", "dlq"),
    ("Traces", "traces"),
    ("Live", "live"),
]


def navigation(request):
    items = []
    for label, name in NAVIGATION:
        try:
            url = reverse(name)
        except NoReverseMatch:
            url = None
        items.append({"label": label, "url": url, "active": bool(url) and request.path.startswith(url)})
    window = getattr(request, "window", None)
    kept = [(k, v) for k, v in request.GET.items() if k not in ("last", "from", "to", "before", "after")]
    from collector.roles import has_role

    return {
        "nav_items": items,
        "is_admin": has_role(request.user, "admin"),
        "window": window,
        "window_choices": timewindow.CHOICES,
        "window_kept": kept,
    }
