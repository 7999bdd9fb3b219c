"""The one writer of what the collector learns about versions from each committed batch
(`install` hooks it in after each commit, before the ack), in one statement:

- hourly counts per type x version x producer x subject, with the first and last message's
  time (the linker sums days and producers from them);
- the lowest and highest stream sequence of each version per stream and subject (what
  consumer ack floors are compared with);
- payload shapes: each payload is walked once to its shape; each distinct shape of a batch
  is merged with its count (its paths and, the first time this process sees it, a capped
  copy of the payload as an example);
- drift: a shape new to this process is checked against the schema its version has in the
  store at that moment; a contradiction is kept with the events that carried it.

Every statement adds to what is there (INSERT ... ON CONFLICT DO UPDATE with sums, least,
greatest), keys in a fixed order, so collectors sharing a stream never overwrite each
other nor deadlock. Only rows new to the store count (a redelivered batch adds nothing);
a crash between the events' commit and this hook loses that batch's counts here (the
events themselves are stored)."""
import json
import logging
import time
from datetime import UTC, datetime

from collector.versions import inference

log = logging.getLogger("eventscope.versions")

EXAMPLE_BYTES = 16 * 1024  # a larger payload is not kept as an example
MAX_SHAPES_PER_VERSION = 500  # beyond it, new shapes of a version are counted as one overflow shape
OVERFLOW = "overflow"
MAX_KNOWN = 100_000  # shapes remembered by one process


class Tally:
    """One batch, added up in memory (no I/O): `add(row)` for each new row: hourly counts
    (with first and last time), stream sequences and shapes."""

    def __init__(self, learner):
        self.learner = learner
        self.hours = {}  # (hour number, type, version, producer, subject) -> [count, bytes, first, last]
        self.streams = {}  # (broker, stream, subject, type, version) -> [min, max, count, first, last]
        self.shapes = {}  # (type, version, fingerprint) -> [count, first, last, paths, row]
        self.drifts = {}  # (type, version, fingerprint) -> [count, first row, last row, reasons]
        self.pending_reasons = {}  # drift verdicts of shapes new to this process, kept once committed

    def add(self, row):
        type_, version, ts = row.type, row.version or "", row.ts
        key = (int(ts.timestamp()) // 3600, type_, version, row.producer or "", row.subject)
        found = self.hours.get(key)
        if found is None:
            self.hours[key] = [1, row.size, ts, ts]
        else:
            found[0] += 1
            found[1] += row.size
            if ts < found[2]:
                found[2] = ts
            elif ts > found[3]:
                found[3] = ts
        if row.stream:
            key = (row.broker_id, row.stream, row.subject, type_, version)
            found = self.streams.get(key)
            if found is None:
                self.streams[key] = [row.seq, row.seq, 1, ts, ts]
            else:
                found[0] = min(found[0], row.seq)
                found[1] = max(found[1], row.seq)
                found[2] += 1
                found[3] = min(found[3], ts)
                found[4] = max(found[4], ts)
        if row.payload is not None:
            self._add_shape(row, type_, version)

    def _add_shape(self, row, type_, version):
        fingerprint, shape = inference.describe(row.payload)
        key = (type_, version, fingerprint)
        found = self.shapes.get(key)
        if found is None:
            fingerprint = self.learner.admit(type_, version, fingerprint)
            key = (type_, version, fingerprint)
            found = self.shapes.get(key)
        if found is None:
            paths = inference.paths_of(shape) if fingerprint != OVERFLOW else {}
            self.shapes[key] = [1, row.ts, row.ts, paths, row]
        else:
            found[0] += 1
            found[1] = min(found[1], row.ts)
            found[2] = max(found[2], row.ts)

    def empty(self):
        return not self.hours


class Learner:
    """What one collector process remembers between batches: the shapes it has written and
    whether each contradicted its version's schema when it first appeared."""

    def __init__(self):
        self.known = {}  # (type, version, fingerprint) -> drift reasons ([] when none)
        self.per_version = {}  # (type, version) -> distinct shapes seen by this process
        self.stats = {"batches": 0, "rows": 0, "shapes": 0, "drift": 0, "seconds": 0.0}

    def admit(self, type_, version, fingerprint):
        """The fingerprint to count a payload under: its own, or OVERFLOW once its version has
        more shapes than MAX_SHAPES_PER_VERSION in this process."""
        if (type_, version, fingerprint) in self.known:
            return fingerprint
        seen = self.per_version.get((type_, version), 0)
        if seen >= MAX_SHAPES_PER_VERSION:
            return OVERFLOW
        self.per_version[(type_, version)] = seen + 1
        return fingerprint

    def report(self):
        return dict(self.stats, known=len(self.known))


def tally(learner, rows):
    """A Tally of the rows new to the store that name a type."""
    batch = Tally(learner)
    for row in rows:
        if row.id is not None and row.type:
            batch.add(row)
    return batch


def write(learner, batch, cursor):
    """Merge one batch into the store with `cursor` (in the caller's transaction), in one
    statement (drift, rare, in a second): drift is checked first for shapes new to this
    process, against the schema in the store."""
    _check_drift(learner, batch, cursor)
    hours, streams, shapes = _hour_rows(batch.hours), _stream_rows(batch.streams), _shape_rows(learner, batch.shapes)
    cursor.execute(MERGE, [*hours, *streams, *shapes])
    _merge_drift(cursor, batch.drifts)


def remember(learner, batch):
    """After the commit: the batch's shapes are in the store."""
    if len(learner.known) > MAX_KNOWN:
        learner.known.clear()
        learner.per_version.clear()
    for key in batch.shapes:
        learner.known.setdefault(key, batch.pending_reasons.get(key, []))


def _check_drift(learner, batch, cursor):
    batch.pending_reasons = {}
    fresh = {}
    for key, (count, first, last, paths, row) in batch.shapes.items():
        reasons = learner.known.get(key)
        if reasons is None and key[2] != OVERFLOW:
            schema = fresh.get(key[:2])
            if schema is None:
                schema = fresh[key[:2]] = _schema_in_store(cursor, *key[:2])
            # A shape already in the store keeps the verdict it got when it first appeared.
            reasons = schema.drifting.get(key[2], []) if key in schema.fingerprints else inference.drift(paths, schema)
            batch.pending_reasons[key] = reasons
        if reasons:
            batch.drifts[key] = [count, row, row, reasons]
    # The drift rows name the first and the latest event of the batch for each shape.
    if batch.drifts:
        for key in batch.drifts:
            batch.drifts[key][2] = batch.shapes[key][4]


def _schema_in_store(cursor, type_, version):
    cursor.execute("SELECT fingerprint, paths, count FROM collector_versionshape WHERE type = %s AND version = %s",
                   [type_, version])
    rows = cursor.fetchall()
    schema = inference.Schema.from_shapes((_json(paths), count) for _, paths, count in rows)
    schema.fingerprints = {(type_, version, fingerprint) for fingerprint, _, _ in rows}
    cursor.execute("SELECT fingerprint, reasons FROM collector_versiondrift WHERE type = %s AND version = %s",
                   [type_, version])
    schema.drifting = {fingerprint: _json(reasons) for fingerprint, reasons in cursor.fetchall()}
    return schema


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


MERGE = """
WITH hours AS (
    INSERT INTO collector_versionrollup (bucket, type, version, producer, subject, count, bytes, first_seen, last_seen)
    SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int8[], %s::int8[],
                         %s::timestamptz[], %s::timestamptz[])
    ON CONFLICT (bucket, type, version, producer, subject) DO UPDATE
    SET count = collector_versionrollup.count + EXCLUDED.count,
        bytes = collector_versionrollup.bytes + EXCLUDED.bytes,
        first_seen = least(collector_versionrollup.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(collector_versionrollup.last_seen, EXCLUDED.last_seen)
    RETURNING 1
), streams AS (
    INSERT INTO collector_versionstream (broker_id, stream, subject, type, version, min_seq, max_seq, count,
                                         first_seen, last_seen)
    SELECT * FROM unnest(%s::int8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int8[], %s::int8[],
                         %s::int8[], %s::timestamptz[], %s::timestamptz[])
    ON CONFLICT (broker_id, stream, subject, type, version) DO UPDATE
    SET min_seq = least(collector_versionstream.min_seq, EXCLUDED.min_seq),
        max_seq = greatest(collector_versionstream.max_seq, EXCLUDED.max_seq),
        count = collector_versionstream.count + EXCLUDED.count,
        first_seen = least(collector_versionstream.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(collector_versionstream.last_seen, EXCLUDED.last_seen)
    RETURNING 1
), shapes AS (
    INSERT INTO collector_versionshape (type, version, fingerprint, paths, count, first_seen, last_seen, example,
                                        example_event_id, example_ts, example_subject)
    SELECT t, v, f, p::jsonb, c, fs, ls, e::jsonb, ei, et, es
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int8[], %s::timestamptz[],
                %s::timestamptz[], %s::text[], %s::int8[], %s::timestamptz[], %s::text[])
         AS s(t, v, f, p, c, fs, ls, e, ei, et, es)
    ON CONFLICT (type, version, fingerprint) DO UPDATE
    SET count = collector_versionshape.count + EXCLUDED.count,
        first_seen = least(collector_versionshape.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(collector_versionshape.last_seen, EXCLUDED.last_seen),
        example = coalesce(collector_versionshape.example, EXCLUDED.example),
        example_event_id = CASE WHEN collector_versionshape.example IS NULL THEN EXCLUDED.example_event_id
                                ELSE collector_versionshape.example_event_id END,
        example_ts = CASE WHEN collector_versionshape.example IS NULL THEN EXCLUDED.example_ts
                          ELSE collector_versionshape.example_ts END,
        example_subject = CASE WHEN collector_versionshape.example IS NULL THEN EXCLUDED.example_subject
                               ELSE collector_versionshape.example_subject END
    RETURNING 1
)
SELECT (SELECT count(*) FROM hours), (SELECT count(*) FROM streams), (SELECT count(*) FROM shapes)
"""


def _columns(keys, values, width):
    """Column arrays for unnest: the keys' parts, then the values' parts."""
    return [[k[i] for k in keys] for i in range(len(keys[0]) if keys else width[0])] + \
        [[v[i] for v in values] for i in range(len(values[0]) if values else width[1])]


def _hour_rows(hours):
    keys = sorted(hours)  # a fixed order, so two writers of the same keys never deadlock
    rows = [(datetime.fromtimestamp(k[0] * 3600, UTC), *k[1:]) for k in keys]
    return _columns(rows, [hours[k] for k in keys], (5, 4))


def _stream_rows(streams):
    keys = sorted(streams)
    return _columns(keys, [streams[k] for k in keys], (5, 5))


def _shape_rows(learner, shapes):
    keys = sorted(shapes)
    values = []
    for key in keys:
        count, first, last, paths, row = shapes[key]
        fresh = key not in learner.known and key[2] != OVERFLOW
        text = example_of(row.payload) if fresh else None
        values.append((json.dumps(paths), count, first, last, text, row.id if text else None,
                       row.ts if text else None, row.subject if text else ""))
    return _columns(keys, values, (3, 8))


def example_of(payload):
    """The payload as a stored example, or None when it is too large to keep."""
    try:
        text = json.dumps(payload, ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return text if len(text.encode("utf-8", "surrogatepass")) <= EXAMPLE_BYTES else None


def _merge_drift(cursor, drifts):
    if not drifts:
        return
    keys = sorted(drifts)
    values = [drifts[k] for k in keys]
    cursor.execute(
        """
        INSERT INTO collector_versiondrift (type, version, fingerprint, reasons, count, first_seen, last_seen,
                                            first_event_id, last_event_id, subject)
        SELECT t, v, f, r::jsonb, c, fs, ls, fe, le, s
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int8[], %s::timestamptz[],
                    %s::timestamptz[], %s::int8[], %s::int8[], %s::text[]) AS x(t, v, f, r, c, fs, ls, fe, le, s)
        ON CONFLICT (type, version, fingerprint) DO UPDATE
        SET count = collector_versiondrift.count + EXCLUDED.count,
            first_event_id = CASE WHEN EXCLUDED.first_seen < collector_versiondrift.first_seen
                                  THEN EXCLUDED.first_event_id ELSE collector_versiondrift.first_event_id END,
            first_seen = least(collector_versiondrift.first_seen, EXCLUDED.first_seen),
            last_event_id = CASE WHEN EXCLUDED.last_seen >= collector_versiondrift.last_seen
                                 THEN EXCLUDED.last_event_id ELSE collector_versiondrift.last_event_id END,
            last_seen = greatest(collector_versiondrift.last_seen, EXCLUDED.last_seen)
        """,
        [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [json.dumps(v[3]) for v in values],
         [v[0] for v in values], [v[1].ts for v in values], [v[2].ts for v in values], [v[1].id for v in values],
         [v[2].id for v in values], [v[1].subject for v in values]],
    )


def store_batch(learner, rows):
    """Tally `rows` and merge them in one transaction; returns the Tally (None when nothing
    in the batch names a type). Runs in a thread (Django's connection)."""
    from django.db import connection, transaction

    started = time.perf_counter()
    batch = tally(learner, rows)
    if batch.empty():
        return None
    with transaction.atomic(), connection.cursor() as cursor:
        write(learner, batch, cursor)
    remember(learner, batch)
    stats = learner.stats
    stats["batches"] += 1
    stats["rows"] += sum(item[0] for item in batch.hours.values())
    stats["shapes"] += len(batch.shapes)
    stats["drift"] += sum(v[0] for v in batch.drifts.values())
    stats["seconds"] += time.perf_counter() - started
    return batch
