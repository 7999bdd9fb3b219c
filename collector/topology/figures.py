"""The graph's pure figures: a service's namespace, health from an error share, the worse
of two healths, an edge's p95 from its duration histogram."""
import re

from collector.models.traces import DURATION_BUCKETS_US


def namespace(name, pattern=""):
    """The namespace a service is collapsed into: the first group of the admin's pattern,
    else the part before the last dot (`go.micro.srv.order` -> `go.micro.srv`), else the name."""
    if pattern:
        try:
            match = re.search(pattern, name)
        except re.error:
            match = None
        if match:
            return match.group(1) if match.groups() else match.group(0)
    return name.rsplit(".", 1)[0] if "." in name else name


def health(errors, count, thresholds):
    if not count:
        return "idle"
    share = errors / count
    if share > thresholds.bad_error_rate:
        return "bad"
    if share > thresholds.warn_error_rate:
        return "warn"
    return "ok"


_BOUNDS = [0, *DURATION_BUCKETS_US, DURATION_BUCKETS_US[-1] * 2]


def p95(histogram):
    """traces.readers.percentile(histogram, 0.95) without its per-call set-up (thousands of edges)."""
    total = sum(histogram)
    if not total:
        return None
    rank = 0.95 * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low, high = _BOUNDS[index], _BOUNDS[index + 1]
            return int(low + (high - low) * (rank - seen) / count)
        seen += count
    return _BOUNDS[-1]


_RANK = {"idle": 0, "ok": 1, "warn": 2, "bad": 3}
STATUS_HEALTH = {"lagging": "warn", "growing": "warn", "stalled": "bad"}


def worst(a, b):
    """The worse of two healths (the first on a tie)."""
    return a if _RANK.get(a, 0) >= _RANK.get(b, 0) else b
