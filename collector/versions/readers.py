"""The queries /versions/ and /api/versions share, and the pieces /versions/<type>/ reuses.
They read the versions tables only, never the events themselves.

Counts come by the hour, or by the day for windows over two days, so a window is widened
to whole hours (days) for them; "produced in the window" also checks each producer's exact
last message."""
from datetime import UTC, datetime, timedelta

from django.db import connection

from collector.versions import answer
from collector.versions.order import label, newest, sort_versions

PAGE = 50
MINUTE_CHART = timedelta(hours=6)  # windows up to this long chart per minute
HOUR_CHART = timedelta(days=14)  # then per hour; longer per day


class BadFilter(ValueError):
    pass


def _hour_floor(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(moment):
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _day_ceil(moment):
    floor = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(days=1)


def _rollup_union(window, where="", params=()):
    """SQL selecting (type, version, producer, subject, count, bytes) rows of the window, and
    its parameters: hourly rows for windows up to two days, else daily rows (the window
    widened to whole UTC days, so a month reads some 30 rows per series, not 720)."""
    h0, h1 = _hour_floor(window.start), _hour_ceil(window.end)
    if h1 - h0 <= timedelta(days=2):
        table, start, end = "collector_versionrollup", h0, h1
    else:
        table, start, end = "collector_versionrollupday", h0.replace(hour=0), _day_ceil(h1)
    sql = (f"SELECT type, version, producer, subject, count, bytes FROM {table} "
           f"WHERE bucket >= %s AND bucket < %s {where}")
    return sql, [start, end, *params]


def _fetch(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def parse_filters(params):
    filters = {key: (params.get(key) or "").strip() for key in ("topic", "producer", "status", "type")}
    if filters["status"] and filters["status"] not in answer.STATUSES:
        raise BadFilter(f"status={filters['status']!r}: one of {', '.join(answer.STATUSES)}")
    return {key: value for key, value in filters.items() if value}


# --- the pieces ---------------------------------------------------------------------------------


def _only(types, word="AND"):
    """SQL and parameters restricting a query to `types` (None: every type)."""
    return (f"{word} type = ANY(%s)", [list(types)]) if types is not None else ("", [])


def _counts(window, types=None):
    """{(type, version): {"count", "bytes", "producers": {name: count}, "subjects": set}}."""
    where, params = _only(types)
    sql, args = _rollup_union(window, where, params)
    rows = _fetch(f"SELECT type, version, producer, subject, sum(count)::bigint, sum(bytes)::bigint FROM ({sql}) r "
                  f"GROUP BY 1, 2, 3, 4", args)
    counts = {}
    for type_, version, producer, subject, count, size in rows:
        item = counts.setdefault((type_, version), {"count": 0, "bytes": 0, "producers": {}, "subjects": set()})
        item["count"] += count
        item["bytes"] += size
        item["producers"][producer] = item["producers"].get(producer, 0) + count
        item["subjects"].add(subject)
    return counts


def _producers(types=None):
    where, params = _only(types, "WHERE")
    rows = _fetch(f"SELECT type, version, producer, first_seen, last_seen FROM collector_versionproducer "
                  f"{where}", params)
    found = {}
    for type_, version, producer, first, last in rows:
        found.setdefault((type_, version), []).append(
            {"name": producer, "first_seen": first, "last_seen": last, "instances": []})
    return found


CONSUMER_FIELDS = ["processed", "failed", "dead_letters", "first_processed", "last_processed", "last_failed",
                   "last_dead_letter", "floor_passed", "stream"]


def _consumers(types=None):
    """{(type, version): {consumer: {...}}} of every type, or of `types`."""
    where, params = _only(types, "WHERE")
    rows = _fetch(f"SELECT type, version, consumer, {', '.join(CONSUMER_FIELDS)} FROM collector_versionconsumer "
                  f"{where}", params)
    found = {}
    for type_, version, consumer, *rest in rows:
        found.setdefault((type_, version), {})[consumer] = dict(zip(CONSUMER_FIELDS, rest))
    return found


def _drift_counts(window, types=None):
    where, params = _only(types)
    rows = _fetch(f"SELECT type, version, sum(count)::bigint FROM collector_versiondrift "
                  f"WHERE last_seen >= %s AND first_seen <= %s {where} GROUP BY 1, 2",
                  [window.start, window.end, *params])
    return {(t, v): n for t, v, n in rows}


def _instances(types):
    rows = _fetch("SELECT type, version, service, service_version, instance, count, last_seen "
                  "FROM collector_versioninstance WHERE type = ANY(%s)", [list(types)])
    found = {}
    for type_, version, service, service_version, instance, count, last_seen in rows:
        found.setdefault((type_, version, service), []).append(
            {"service_version": service_version, "instance": instance, "count": count, "last_seen": last_seen})
    return found


def _stream_subjects(types=None):
    where, params = _only(types, "WHERE")
    return _fetch(f"SELECT DISTINCT type, subject FROM collector_versionstream {where}", params)


def _assemble(window, counts, producers, consumers, drift, instances=None):
    """{type: {version: the judge() input}}."""
    types = {}
    for key in set(counts) | set(producers) | set(consumers):
        type_, version = key
        item = counts.get(key, {})
        listed = [dict(p) for p in producers.get(key, [])]
        for producer in listed:
            producer["instances"] = (instances or {}).get((type_, version, producer["name"]), [])
            producer["in_window"] = item.get("producers", {}).get(producer["name"], 0)
        types.setdefault(type_, {})[version] = {
            "produced": item.get("count", 0), "bytes": item.get("bytes", 0), "producers": listed,
            "window_producers": item.get("producers", {}), "subjects": item.get("subjects", set()),
            "consumers": consumers.get(key, {}), "drift": drift.get(key, 0),
        }
    return types


def _version_rows(type_, versions, verdicts, now):
    total = sum(v["produced"] for v in versions.values())
    rows = []
    for version in sort_versions(versions):
        info, verdict = versions[version], verdicts[version]
        last = max((p["last_seen"] for p in info["producers"]), default=None)
        rows.append({
            "version": version, "label": label(version), "count": info["produced"],
            "share": info["produced"] / total if total else 0.0,
            "producers": sorted(p["name"] for p in info["producers"] if p["in_window"] or not total),
            "consumers": sorted(n for n, c in info["consumers"].items() if answer.processed(c)),
            "last_produced": last, "last_produced_text": answer.ago(last, now) if last else "never",
            "status": verdict["status"], "answer": verdict["answer"], "drift": info["drift"],
        })
    return rows


# --- lean rows: what statuses need, for every type at once (no datetimes to parse) ---------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _lean_versions(window):
    """{type: {version: judge() input}} for statuses only: counts per version, whether each
    producer sent it since the window's start, whether each consumer processed it, dead
    letters in the window. Timestamps stand in as the window's start (recent) or EPOCH."""
    start = window.start
    sql, args = _rollup_union(window)
    counts = {(t, v): n for t, v, n in _fetch(
        f"SELECT type, version, sum(count)::bigint FROM ({sql}) r GROUP BY 1, 2", args)}
    producers = {}
    for type_, version, name, recent in _fetch(
            "SELECT type, version, producer, last_seen >= %s FROM collector_versionproducer", [start]):
        producers.setdefault((type_, version), []).append(
            {"name": name, "last_seen": start if recent else EPOCH, "instances": [], "in_window": 0})
    consumers = {}
    for type_, version, name, done, dead in _fetch(
            "SELECT type, version, consumer, processed > 0 OR floor_passed IS NOT NULL, "
            "CASE WHEN last_dead_letter >= %s THEN dead_letters ELSE 0 END FROM collector_versionconsumer", [start]):
        consumers.setdefault((type_, version), {})[name] = {
            "processed": int(done), "floor_passed": None, "dead_letters": dead, "last_dead_letter": start if dead else None}
    drift = _drift_counts(window)
    types = {}
    for key in set(counts) | set(producers) | set(consumers):
        types.setdefault(key[0], {})[key[1]] = {
            "produced": counts.get(key, 0), "producers": producers.get(key, []), "consumers": consumers.get(key, {}),
            "drift": drift.get(key, 0)}
    return types


def _types_on(window, topic):
    """Types seen on `topic`: in the window's counts, or ever on a stream."""
    sql, args = _rollup_union(window, "AND subject = %s", [topic])
    rows = _fetch(f"SELECT DISTINCT type FROM ({sql}) r UNION SELECT type FROM collector_versionstream "
                  f"WHERE subject = %s", [*args, topic])
    return {row[0] for row in rows}


# --- /versions/ ----------------------------------------------------------------------------------


def version_list(window, filters, after=None, limit=PAGE, now=None):
    """(types, next cursor, counts by status): every type with its versions in the window,
    filtered by type name, topic, producer and status, in name order after `after`. Statuses
    of every type come from lean rows; the page's types are then read in full."""
    now = now or window.end
    lean = _lean_versions(window)
    on_topic = _types_on(window, filters["topic"]) if filters.get("topic") else None
    by_status = dict.fromkeys(answer.STATUSES, 0)
    chosen = []
    for type_ in sorted(lean):
        versions = lean[type_]
        if filters.get("type") and filters["type"].lower() not in type_.lower():
            continue
        if on_topic is not None and type_ not in on_topic:
            continue
        if filters.get("producer") and not any(
                p["name"] == filters["producer"] for v in versions.values() for p in v["producers"]):
            continue
        statuses = {v["status"] for v in answer.judge(versions, window.start, now, words=False).values()}
        for status in statuses:
            by_status[status] += 1
        if filters.get("status") and filters["status"] not in statuses:
            continue
        chosen.append(type_)
    begin = 0
    if after:
        while begin < len(chosen) and chosen[begin] <= after:
            begin += 1
    page = chosen[begin:begin + limit]
    more = begin + limit < len(chosen)
    counts = _counts(window, page)
    detailed = _assemble(window, counts, _producers(page), _consumers(page), _drift_counts(window, page),
                         _instances(page))
    subjects = {}
    for type_, subject in _stream_subjects(page):
        subjects.setdefault(type_, set()).add(subject)
    for (type_, _), item in counts.items():
        subjects.setdefault(type_, set()).update(item["subjects"])
    rows = []
    for type_ in page:
        versions = detailed[type_]
        verdicts = answer.judge(versions, window.start, now)
        rows.append({"type": type_, "versions": _version_rows(type_, versions, verdicts, now),
                     "total": sum(v["produced"] for v in versions.values()),
                     "subjects": sorted(subjects.get(type_, ())), "newest": label(newest(versions))})
    return rows, (page[-1] if more and page else None), by_status
