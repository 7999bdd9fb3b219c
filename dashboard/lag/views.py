"""Consumer pages: `/consumers/` and `/consumers/<stream>/<name>/`. Both read the store only
(the sampler in the collector keeps it current); the detail page's chart gets its series
through a json_script block, drawn by frontend/src/lagchart.js."""
from urllib.parse import quote

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from collector.keyset import BadFilter
from collector.lag import readers
from collector.lag.reconcile import DEFINITIONS, account
from collector.roles import ROLES, has_role
from dashboard.presenters import sparkline_points

BADGES = {"ok": "ok", "gone": "muted", "lagging": "warn"}


def duration_text(seconds):
    """A duration as a person reads it: 45 s, 12 min, 3.5 h, 2.0 d."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return "0 s" if seconds <= 0 else "<1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def drain_text(row):
    if row["lag"] is None:
        return "—"
    if row["growing"]:
        return "growing"
    if row["lag"] == 0:
        return "drained"
    return duration_text(row["drain_seconds"]) if row["drain_seconds"] is not None else "not draining"


def require_viewer(request):
    """A user in no group sees no data."""
    if not has_role(request.user, *ROLES):
        raise PermissionDenied("Your account has no role: ask an admin for one")


def list_context(request):
    """What /consumers/ and /api/consumers show; raises BadFilter."""
    filters = readers.parse_filters(request.GET)
    sort = request.GET.get("sort") if request.GET.get("sort") in readers.SORTS else "lag"
    rows, next_cursor = readers.consumers(filters, sort=sort, after=request.GET.get("after"))
    lines = readers.sparklines([row["id"] for row in rows], request.window)
    for row in rows:
        row["spark"] = lines.get(row["id"], [])
    return {"filters": filters, "sort": sort, "consumers": rows, "next_cursor": next_cursor}


def consumer_list(request):
    require_viewer(request)
    observers, _ = readers.consumers({}, sort="stream", observer=True, limit=200)
    try:
        context = list_context(request)
    except BadFilter as error:
        return render(request, "lag/consumers.html", {"error": str(error), "consumers": [], "filters": {},
                                                      "statuses": readers.STATUSES, "sorts": list(readers.SORTS)},
                      status=400)
    window_query, base = urlencode(request.window.query()), reverse("consumers")
    for row in context["consumers"] + observers:
        row["spark_points"] = sparkline_points(row.get("spark") or [0])
        row["oldest_text"] = duration_text(row["oldest_age"])
        row["drain_text"] = drain_text(row)
        row["badge"] = BADGES.get(row["status"], "error")
        # Built here rather than with {% url %} per row: the list renders 50 rows fast.
        row["url"] = (f"{base}{quote(row['stream'], safe='')}/{quote(row['name'], safe='')}/?{window_query}"
                      + (f"&broker={quote(row['broker'], safe='')}" if row["broker"] != "nats" else ""))
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
    return render(request, "lag/consumers.html", {
        **context, "next_query": next_query, "first_query": first_query, "observers": observers,
        "counts": readers.status_counts(), "statuses": readers.STATUSES, "sorts": list(readers.SORTS),
        "streams": readers.streams(), "last_round": readers.last_round(),
    })


def detail_context(request, stream, name):
    consumer = readers.consumer(stream, name, request.GET.get("broker"))
    if consumer is None:
        raise Http404(f"No consumer {stream}/{name} has been sampled")
    window = request.window
    spans = readers.consumer_spans(consumer, window)
    service, service_source = readers.service_behind(consumer, spans)
    dead_count, dead = readers.dead_letters(consumer)
    timeline = readers.timeline(consumer, window)
    return {
        "consumer": consumer, "history": readers.history(consumer, window), "timeline": timeline,
        "reconciliation": account(consumer, readers.latest_sample(consumer)), "spans": spans, "service": service,
        "service_source": service_source, "dead_count": dead_count, "dead_letters": dead,
        "latest": readers.latest_sample(consumer, read_only=False),
    }


def consumer_detail(request, stream, name):
    require_viewer(request)
    context = detail_context(request, stream, name)
    consumer = context["consumer"]
    chart = {
        "history": context["history"],
        "marks": [{"t": item["at"].timestamp(), "label": _mark_label(item)} for item in context["timeline"]],
        "window": {"from": request.window.start.timestamp(), "to": request.window.end.timestamp()},
    }
    figures = {"lag": consumer.lag, "growing": consumer.growing, "drain_seconds": consumer.drain_seconds}
    return render(request, "lag/consumer.html", {
        **context, "chart": chart, "config_rows": _config_rows(consumer), "oldest_text": duration_text(consumer.oldest_age),
        "partitions": _partitions(consumer),
        "drain_text": drain_text(figures), "definitions": DEFINITIONS,
    })


def _partitions(consumer):
    """A Kafka group's partitions on the topic, hottest first, each with its share of the lag
    (a bar wide as that share), so one hot partition stands out."""
    if consumer.kind != "kafka":
        return []
    rows = list((consumer.config or {}).get("partitions") or [])
    total = sum(row.get("lag", 0) for row in rows)
    for row in rows:
        row["share"] = round(100 * row.get("lag", 0) / total) if total else 0
    return sorted(rows, key=lambda row: (-row.get("lag", 0), row.get("partition", 0)))


def _mark_label(item):
    if item["kind"] == "crossing":
        return f"{item['status_from']} → {item['status_to']}"
    return item["kind"]


def _config_rows(consumer):
    config = consumer.config or {}
    if consumer.kind == "kafka":
        hot = config.get("hot_partition")
        return [
            ("Consumer group", config.get("group")),
            ("Topics", ", ".join(config.get("topics") or [])),
            ("Members", config.get("instances")),
            ("Group state", config.get("state") or "—"),
            ("Delivery", "partitioned by key within the group; every group gets every message"),
            ("Hottest partition", "—" if hot is None else f"{hot} ({config.get('hot_share', 0) * 100:.0f}% of the lag)"),
            ("Partitions never committed", ", ".join(map(str, config.get("uncommitted_partitions") or [])) or "—"),
        ]
    if consumer.kind != "jetstream":
        return sorted(config.items())
    max_deliver = config.get("max_deliver")
    return [
        ("Type", "pull" if config.get("pull") else "push"),
        ("Durable", config.get("durable") or "— (ephemeral)"),
        ("Ack policy", config.get("ack_policy")),
        ("Max deliver", "unlimited" if max_deliver in (None, -1, 0) else max_deliver),
        ("Ack wait", f"{config.get('ack_wait_seconds', 0):g} s"),
        ("Filter subjects", ", ".join(config.get("filter_subjects") or []) or "every subject of the stream"),
        ("Deliver group", config.get("deliver_group") or "—"),
        ("Deliver policy", config.get("deliver_policy")),
        ("Max ack pending", config.get("max_ack_pending")),
    ]
