"""Queries over the trace tables, shared by the trace pages, the share links and the
Jaeger-compatible API."""
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection

from collector.models import Event, PrunedRange
from collector.models.traces import (
    DURATION_BUCKETS_US,
    Span,
    SpanOperation,
    SpanRollup,
    TraceSummary,
)

SEARCH_LIMIT = 100
HEX = re.compile(r"^[0-9a-f]{1,32}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?\s*$")
_UNIT_US = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, None: 1_000}


class BadQuery(ValueError):
    pass


def normalise_trace_id(text):
    """32 lowercase hex digits (a 64-bit id is left-padded), or None when it is no trace id."""
    text = (text or "").strip().lower()
    return text.rjust(32, "0") if HEX.match(text) else None


def parse_duration_us(text):
    """'250ms', '1.5s', '300us', '2m' or a bare number of milliseconds, in microseconds."""
    if not text or not str(text).strip():
        return None
    match = _DURATION.match(str(text))
    if not match:
        raise BadQuery(f"duration {text!r}: use a number and a unit, like 250ms or 1.5s")
    return int(float(match.group(1)) * _UNIT_US[match.group(2)])


def parse_tags(text):
    """'k=v k2=v2' or 'k=v, k2=v2' (or a list of such) into a dict."""
    pairs = {}
    items = text if isinstance(text, (list, tuple)) else [text or ""]
    for item in items:
        for part in re.split(r"[\s,]+(?=[^\s,=]+=)", item.strip()):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise BadQuery(f"tag filter {part!r} must look like key=value")
            pairs[key.strip()] = value.strip().strip('"')
    return pairs


@dataclass
class Search:
    service: str = ""
    operation: str = ""
    tags: dict = None
    min_duration_us: int | None = None
    max_duration_us: int | None = None
    errors_only: bool = False
    limit: int = SEARCH_LIMIT


def search(window, query):
    """Trace summaries in the window (newest first) that match `query`. Service, duration
    and errors are answered from the summaries; operation and tags need a span that has
    them (service, operation and tags on the same span, as Jaeger matches; tags are the
    span's attributes). Durations are the trace's."""
    where = ["s.start >= %s", "s.start < %s"]
    params = [window.start, window.end]
    if query.service:
        where.append("s.services @> ARRAY[%s]::text[]")
        params.append(query.service)
    if query.min_duration_us is not None:
        where.append('s."end" - s.start >= %s * interval \'1 microsecond\'')
        params.append(query.min_duration_us)
    if query.max_duration_us is not None:
        where.append('s."end" - s.start <= %s * interval \'1 microsecond\'')
        params.append(query.max_duration_us)
    if query.errors_only:
        where.append("s.error_count > 0")
    if query.operation or query.tags:
        # Driven from the spans (the tag index finds rare values fast); spans start within
        # their trace, so the span partitions to read are bounded by the window.
        span_where = ["sp.start >= %s", "sp.start < %s"]
        span_params = [window.start, window.end + timedelta(hours=1)]
        if query.service:
            span_where.append("sp.service = %s")
            span_params.append(query.service)
        if query.operation:
            span_where.append("sp.operation = %s")
            span_params.append(query.operation)
        for key, value in (query.tags or {}).items():
            # The value as typed and as the exporter may have sent it (a number, a boolean).
            span_where.append("(sp.tags @> %s::jsonb OR sp.tags @> %s::jsonb)")
            span_params += [_json({key: value}), _json({key: _typed(value)})]
        where.append(f"s.trace_id IN (SELECT sp.trace_id FROM collector_span sp WHERE {' AND '.join(span_where)})")
        params += span_params
    sql = f"""
        SELECT s.trace_id, s.start, s."end", s.root_service, s.root_operation, s.span_count, s.error_count, s.services
        FROM collector_tracesummary s WHERE {' AND '.join(where)}
        ORDER BY s.start DESC LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params + [query.limit])
        rows = cursor.fetchall()
    return [TraceSummary(trace_id=r[0], start=r[1], end=r[2], root_service=r[3], root_operation=r[4],
                         span_count=r[5], error_count=r[6], services=r[7]) for r in rows]


def _typed(value):
    """A tag value as the exporter most likely sent it, so jsonb containment can use the index."""
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        return value


def _json(value):
    import json

    return json.dumps(value)


def summary(trace_id):
    return TraceSummary.objects.filter(trace_id=trace_id).first()


def summaries(trace_ids):
    """{trace id: TraceSummary} of those stored, in one query."""
    return {found.trace_id: found for found in TraceSummary.objects.filter(trace_id__in=list(trace_ids))}


def spans(trace_id, trace_summary=None, after=None, limit=None):
    """The stored spans of a trace, by (start, span id): every one, or at most `limit`
    after the (start, span id) `after`. The summary bounds the partitions read."""
    trace_summary = trace_summary or summary(trace_id)
    qs = Span.objects.filter(trace_id=trace_id)
    if trace_summary is not None:
        qs = qs.filter(start__gte=trace_summary.start, start__lte=trace_summary.end)
    if after is not None:
        qs = qs.extra(where=["(collector_span.start, collector_span.span_id) > (%s, %s)"], params=list(after))
    qs = qs.order_by("start", "span_id")
    return list(qs[:limit] if limit is not None else qs)


def spans_of_traces(found_summaries):
    """{trace id: [spans by start]} for many traces in one query (the Jaeger API's search
    answers up to 1,500 traces): the summaries' times bound the partitions read."""
    found_summaries = list(found_summaries)
    if not found_summaries:
        return {}
    start = min(found.start for found in found_summaries)
    end = max(found.end for found in found_summaries)
    grouped = {found.trace_id: [] for found in found_summaries}
    qs = Span.objects.filter(trace_id__in=list(grouped), start__gte=start, start__lte=end)
    for span in qs.order_by("trace_id", "start", "span_id"):
        grouped[span.trace_id].append(span)
    return grouped


def pruned(window):
    """The retention record when spans of this window were dropped, or None."""
    return (PrunedRange.objects.filter(table="collector_span", start__lt=window.end, end__gt=window.start)
            .order_by("-pruned_at").first())


def services():
    return sorted(SpanOperation.objects.values_list("service", flat=True).distinct())


def operations(service, kind=None):
    """[(operation, kind)] of a service, by name."""
    qs = SpanOperation.objects.filter(service=service)
    if kind:
        qs = qs.filter(kind=kind)
    return sorted(set(qs.values_list("operation", "kind")))


def dependencies(start, end):
    """[(parent service, child service, calls)]: spans whose parent is in another service."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT p.service, c.service, count(*)
            FROM collector_span c
            JOIN collector_span p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
                 AND p.start >= %s - interval '1 hour' AND p.start < %s
            WHERE c.start >= %s AND c.start < %s AND c.parent_span_id IS NOT NULL AND p.service <> c.service
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            [start, end, start, end],
        )
        return cursor.fetchall()


def events_for_spans(trace_id, spans_):
    """{span_id: [(event id, subject)]}: stored events that carry the span's trace and span
    ids, or whose message id is the span's messaging.message.id."""
    message_ids = {span.message_id: span.span_id for span in spans_ if span.message_id}
    found = {}
    rows = Event.objects.filter(trace_id=trace_id).exclude(span_id=None).values_list("id", "subject", "span_id")
    for ident, subject, span_id in rows[:5000]:
        found.setdefault(span_id, []).append((ident, subject))
    if message_ids:
        rows = Event.objects.filter(event_id__in=list(message_ids)).values_list("id", "subject", "event_id")
        for ident, subject, message_id in rows[:5000]:
            pair = (ident, subject)
            if pair not in found.setdefault(message_ids[message_id], []):
                found[message_ids[message_id]].append(pair)
    return found


def hops(trace_id, spans_, limit=200):
    """{span_id: [Span]}: spans of other traces that carried the same message (by
    messaging.message.id) or that link to this trace's spans, so that publish → consume
    → publish chains across async hops can be followed from one trace to the next."""
    by_message = {}
    for span in spans_:
        if span.message_id:
            by_message.setdefault(span.message_id, []).append(span.span_id)
    ids = {span.span_id for span in spans_}
    found = {}
    if by_message:
        for other in Span.objects.filter(message_id__in=list(by_message)).exclude(trace_id=trace_id)[:limit]:
            for span_id in by_message[other.message_id]:
                found.setdefault(span_id, []).append(other)
    # Spans elsewhere whose OpenTelemetry links point at a span of this trace.
    linked = Span.objects.extra(where=["collector_span.links <> '[]'", "collector_span.links @> %s::jsonb"],
                                params=[_json([{"trace_id": trace_id}])])
    for other in linked.exclude(trace_id=trace_id)[:limit]:
        for link in other.links:
            if link.get("trace_id") == trace_id and link.get("span_id") in ids:
                found.setdefault(link["span_id"], []).append(other)
    return found


def events_of_trace(trace_id, limit=200):
    """Stored events that carry this trace id, oldest first."""
    return list(Event.objects.filter(trace_id=trace_id).only("id", "ts", "subject", "type", "producer")
                .order_by("ts", "id")[:limit])


def spans_for_event(event):
    """The spans that published or consumed `event` (same trace and span id, or a span
    whose messaging.message.id is the event's id), oldest first."""
    found = []
    if event.trace_id and event.span_id:
        found += list(Span.objects.filter(trace_id=event.trace_id, span_id=event.span_id))
    if event.event_id:
        found += list(Span.objects.filter(message_id=event.event_id)[:50])
    unique = {(span.trace_id, span.span_id): span for span in found}
    return sorted(unique.values(), key=lambda span: span.start)


def red(window, service=None):
    """Per service and operation over the window: calls, errors, rate per second, mean and
    p50/p95/p99 durations (µs, read from the histogram by interpolation)."""
    # Rollups are per whole minute: the window's first minute counts from its own start.
    qs = SpanRollup.objects.filter(minute__gte=window.start.replace(second=0, microsecond=0),
                                   minute__lt=window.end)
    if service:
        qs = qs.filter(service=service)
    groups = {}
    for row in qs.values_list("service", "operation", "count", "errors", "duration_sum_us", "buckets"):
        entry = groups.setdefault(row[:2], [0, 0, 0, [0] * (len(DURATION_BUCKETS_US) + 1)])
        entry[0] += row[2]
        entry[1] += row[3]
        entry[2] += row[4]
        entry[3] = [a + b for a, b in zip(entry[3], row[5])]
    seconds = max(window.seconds, 1)
    result = []
    for (service_, operation), (count, errors, total, buckets) in sorted(groups.items()):
        result.append({
            "service": service_, "operation": operation, "count": count, "errors": errors,
            "rate": count / seconds, "error_rate": errors / count if count else 0.0,
            "mean_us": total / count if count else 0,
            "p50_us": percentile(buckets, 0.50), "p95_us": percentile(buckets, 0.95),
            "p99_us": percentile(buckets, 0.99),
        })
    return result


def percentile(buckets, q):
    """The q-quantile of a DURATION_BUCKETS_US histogram, interpolated inside its bucket."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    bounds = [0] + DURATION_BUCKETS_US + [DURATION_BUCKETS_US[-1] * 2]
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low, high = bounds[index], bounds[index + 1]
            return int(low + (high - low) * (rank - seen) / count)
        seen += count
    return bounds[-1]


def compare(spans_a, spans_b):
    """Two traces side by side by (service, operation): counts and mean durations in each."""
    def group(spans_):
        groups = {}
        for span in spans_:
            entry = groups.setdefault((span.service, span.operation), [0, 0])
            entry[0] += 1
            entry[1] += span.duration_us
        return groups

    a, b = group(spans_a), group(spans_b)
    rows = []
    for key in sorted(set(a) | set(b)):
        count_a, total_a = a.get(key, (0, 0))
        count_b, total_b = b.get(key, (0, 0))
        mean_a = total_a // count_a if count_a else None
        mean_b = total_b // count_b if count_b else None
        rows.append({
            "service": key[0], "operation": key[1], "count_a": count_a, "count_b": count_b,
            "mean_a_us": mean_a, "mean_b_us": mean_b,
            "delta_us": (mean_b - mean_a) if mean_a is not None and mean_b is not None else None,
            "only": "a" if not count_b else "b" if not count_a else "",
        })
    return rows
