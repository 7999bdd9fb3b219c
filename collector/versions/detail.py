"""The queries of /versions/<type>/ and its API: the type's versions with their verdicts, the
producer x version and consumer x version matrices, the schema of each version and the field
diff between two, drift, examples, the share chart and the JSON Schema download. Reads the
versions tables and the per-minute event rollup only."""
import json

from collector.versions import answer, inference
from collector.versions.order import label, sort_versions
from collector.versions.readers import (
    HOUR_CHART,
    MINUTE_CHART,
    _assemble,
    _consumers,
    _counts,
    _drift_counts,
    _fetch,
    _hour_floor,
    _instances,
    _producers,
    _stream_subjects,
    _version_rows,
)

EXAMPLES_PER_VERSION = 3


def shapes(type_):
    rows = _fetch("SELECT version, fingerprint, paths, count, first_seen, last_seen, example, example_event_id, "
                  "example_ts, example_subject FROM collector_versionshape WHERE type = %s ORDER BY count DESC",
                  [type_])
    names = ["version", "fingerprint", "paths", "count", "first_seen", "last_seen", "example", "example_event_id",
             "example_ts", "example_subject"]
    found = []
    for row in rows:
        item = dict(zip(names, row))
        item["paths"] = _json(item["paths"])
        item["example"] = _json(item["example"])
        found.append(item)
    return found


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def schemas(shape_rows):
    """{version: Schema} from the shapes of a type."""
    found = {}
    for item in shape_rows:
        found.setdefault(item["version"], inference.Schema()).add(item["paths"], item["count"])
    return found


def field_diff(shape_rows, left, right):
    """The changes from version `left` to `right`, each with an example value and the event it
    came from (from the version that has the field: `right`, or `left` for a removal)."""
    found = schemas(shape_rows)
    old, new = found.get(left, inference.Schema()), found.get(right, inference.Schema())
    changes = inference.diff(old, new)
    for change in changes:
        source = left if change["change"] == "removed" else right
        change["example"], change["example_event_id"], change["example_version"] = _example(
            shape_rows, source, change["path"])
        change["example_version_label"] = label(source)
    return changes


def _example(shape_rows, version, path):
    for item in shape_rows:
        if item["version"] == version and path in item["paths"] and item["example"] is not None:
            value = inference.value_at(item["example"], path)
            if value is not inference.MISSING:
                return json.dumps(value, ensure_ascii=False)[:200], item["example_event_id"], version
    return None, None, version


def drift_rows(window, type_):
    rows = _fetch("SELECT version, fingerprint, reasons, count, first_seen, last_seen, first_event_id, last_event_id, "
                  "subject FROM collector_versiondrift WHERE type = %s AND last_seen >= %s AND first_seen <= %s "
                  "ORDER BY last_seen DESC LIMIT 100", [type_, window.start, window.end])
    names = ["version", "fingerprint", "reasons", "count", "first_seen", "last_seen", "first_event_id",
             "last_event_id", "subject"]
    found = []
    for row in rows:
        item = dict(zip(names, row))
        item["reasons"] = _json(item["reasons"])
        item["label"] = label(item["version"])
        found.append(item)
    return found


def chart(window, type_, subjects):
    """The share of each version over the window: {"t": [epoch seconds], "series": [{"label",
    "version", "counts", "share"}], "step": seconds}."""
    if window.end - window.start <= MINUTE_CHART and subjects:
        rows = _fetch("SELECT minute, version, sum(count)::bigint FROM collector_eventrollup "
                      "WHERE subject = ANY(%s) AND minute >= %s AND minute < %s AND type = %s GROUP BY 1, 2",
                      [sorted(subjects), window.start.replace(second=0, microsecond=0), window.end, type_])
        step = 60
    else:
        hourly = window.end - window.start <= HOUR_CHART
        table = "collector_versionrollup" if hourly else "collector_versionrollupday"
        start = _hour_floor(window.start) if hourly else window.start.replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)
        rows = _fetch(f"SELECT bucket, version, sum(count)::bigint FROM {table} WHERE type = %s AND bucket >= %s "
                      f"AND bucket < %s GROUP BY 1, 2", [type_, start, window.end])
        step = 3600 if hourly else 86400
    buckets = sorted({row[0] for row in rows})
    versions = sort_versions({row[1] for row in rows})
    index = {bucket: i for i, bucket in enumerate(buckets)}
    counts = {version: [0] * len(buckets) for version in versions}
    for bucket, version, count in rows:
        counts[version][index[bucket]] += count
    totals = [sum(counts[v][i] for v in versions) for i in range(len(buckets))]
    series = [{"version": v, "label": label(v), "counts": counts[v],
               "share": [round(100.0 * c / t, 2) if t else 0 for c, t in zip(counts[v], totals)]} for v in versions]
    return {"t": [int(b.timestamp()) for b in buckets], "series": series, "step": step}


def type_detail(window, type_, now=None):
    """Everything /versions/<type>/ shows, or None when the type was never seen."""
    now = now or window.end
    counts = _counts(window, [type_])
    producers = _producers([type_])
    consumers = _consumers([type_])
    if not (counts or producers or consumers):
        return None
    types = _assemble(window, counts, producers, consumers, _drift_counts(window, [type_]), _instances([type_]))
    versions = types.get(type_, {})
    verdicts = answer.judge(versions, window.start, now)
    rows = _version_rows(type_, versions, verdicts, now)
    order = sort_versions(versions)
    subjects = set()
    for item in counts.values():
        subjects |= item["subjects"]
    for _, subject in _stream_subjects([type_]):
        subjects.add(subject)
    shape_rows = shapes(type_)
    found = schemas(shape_rows)
    return {
        "type": type_, "versions": rows, "order": order, "subjects": sorted(subjects),
        "producer_matrix": _producer_matrix(versions, order, now),
        "consumer_matrix": _consumer_matrix(versions, order),
        "schemas": {v: found[v] for v in order if v in found},
        "shapes": shape_rows, "drift": drift_rows(window, type_),
        "examples": _examples(shape_rows, order),
    }


def _producer_matrix(versions, order, now):
    names = sorted({p["name"] for v in versions.values() for p in v["producers"]})
    matrix = []
    for name in names:
        cells = []
        for version in order:
            producer = next((p for p in versions[version]["producers"] if p["name"] == name), None)
            if producer is None:
                cells.append(None)
                continue
            instances = producer["instances"]
            cells.append({
                "version": version, "in_window": producer["in_window"],
                "first_seen": producer["first_seen"], "last_seen": producer["last_seen"],
                "last_seen_text": answer.ago(producer["last_seen"], now),
                "service_versions": sorted({i["service_version"] for i in instances if i["service_version"]}),
                "instances": len({i["instance"] for i in instances if i["instance"]}),
            })
        matrix.append({"name": name or "(unnamed)", "cells": cells})
    return matrix


def _consumer_matrix(versions, order):
    names = sorted({n for v in versions.values() for n in v["consumers"]})
    matrix = []
    for name in names:
        cells = []
        for version in order:
            consumer = versions[version]["consumers"].get(name)
            if consumer is None:
                cells.append(None)
                continue
            cells.append({"version": version, "processed": answer.processed(consumer),
                          "since": answer.processed_since(consumer), "spans": consumer["processed"],
                          "failed": consumer["failed"], "dead_letters": consumer["dead_letters"],
                          "by_floor": consumer["floor_passed"] is not None, "stream": consumer["stream"]})
        matrix.append({"name": name or "(no consumer named)", "cells": cells})
    return matrix


def _examples(shape_rows, order):
    found = {}
    for item in shape_rows:
        if item["example"] is None:
            continue
        listed = found.setdefault(item["version"], [])
        if len(listed) < EXAMPLES_PER_VERSION:
            listed.append(item)
    return [(v, label(v), found.get(v, [])) for v in order]


def json_schema(type_, version):
    """The inferred JSON Schema of one version, or None when no payload of it was seen."""
    rows = _fetch("SELECT paths, count FROM collector_versionshape WHERE type = %s AND version = %s",
                  [type_, version])
    if not rows:
        return None
    schema = inference.Schema.from_shapes((_json(paths), count) for paths, count in rows)
    return inference.json_schema(schema, title=f"{type_} {label(version)}")
