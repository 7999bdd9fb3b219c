"""The one writer of what the collector learns about versions from each committed batch
(`install` hooks it in after each commit). What the batches of about a second add up to is
written in one statement (many batches share their keys: one upsert per key a second,
not per batch); so the counts of the last second are lost if the collector dies, while the
events themselves are stored and acked as always.

Python walks each payload once to its shape (see `inference.describe`) and sends, per
message, only the stored event's id and its shape's fingerprint; PostgreSQL reads the batch's
rows back by id and, in one statement, adds up

- hourly counts per type x version x producer x subject, with the first and last message's
  time (the linker sums days and producers from them);
- the lowest and highest stream sequence of each version per stream and subject (what
  consumer ack floors are compared with);
- payload shapes with their counts; a shape new to this process also sends its paths and,
  the first time, a capped copy of the payload as an example.

Drift: a shape new to this process is checked against the schema its version has in the
store at that moment; a contradiction is kept with the events that carried it.

Every statement adds to what is there (INSERT ... ON CONFLICT DO UPDATE with sums, least,
greatest), keys in a fixed order, so collectors sharing a stream never overwrite each
other nor deadlock. Only rows new to the store count (a redelivered batch adds nothing)."""
import json
import logging
import time

from collector.versions import inference

log = logging.getLogger("eventscope.versions")

EXAMPLE_BYTES = 16 * 1024  # a larger payload is not kept as an example
MAX_SHAPES_PER_VERSION = 500  # beyond it, new shapes of a version are counted as one overflow shape
OVERFLOW = "overflow"
MAX_KNOWN = 100_000  # shapes remembered by one process
FLUSH_SECONDS = 1.0  # what the batches of this long add up to is written in one statement
FLUSH_ROWS = 50_000  # ... or of this many rows

MERGE = """
WITH batch AS (
    SELECT e.ts, e.type, coalesce(e.version, '') AS version, coalesce(e.producer, '') AS producer, e.subject,
           e.size, e.broker_id, e.stream, e.seq, b.fingerprint
    FROM unnest(%(ids)s::int8[], %(fingerprints)s::text[]) AS b(id, fingerprint)
    JOIN collector_event e ON e.id = b.id AND e.ts >= %(first)s AND e.ts <= %(last)s AND e.type IS NOT NULL
), hours AS (
    INSERT INTO collector_versionrollup (bucket, type, version, producer, subject, count, bytes, first_seen, last_seen)
    SELECT date_trunc('hour', ts), type, version, producer, subject, count(*), sum(size), min(ts), max(ts)
    FROM batch GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (bucket, type, version, producer, subject) DO UPDATE
    SET count = collector_versionrollup.count + EXCLUDED.count,
        bytes = collector_versionrollup.bytes + EXCLUDED.bytes,
        first_seen = least(collector_versionrollup.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(collector_versionrollup.last_seen, EXCLUDED.last_seen)
    RETURNING 1
), streams AS (
    INSERT INTO collector_versionstream (broker_id, stream, subject, type, version, min_seq, max_seq, count,
                                         first_seen, last_seen)
    SELECT broker_id, stream, subject, type, version, min(seq), max(seq), count(*), min(ts), max(ts)
    FROM batch WHERE stream <> '' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (broker_id, stream, subject, type, version) DO UPDATE
    SET min_seq = least(collector_versionstream.min_seq, EXCLUDED.min_seq),
        max_seq = greatest(collector_versionstream.max_seq, EXCLUDED.max_seq),
        count = collector_versionstream.count + EXCLUDED.count,
        first_seen = least(collector_versionstream.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(collector_versionstream.last_seen, EXCLUDED.last_seen)
    RETURNING 1
), fresh AS (
    SELECT * FROM unnest(%(fresh_types)s::text[], %(fresh_versions)s::text[], %(fresh_fingerprints)s::text[],
                         %(paths)s::text[], %(examples)s::text[], %(example_ids)s::int8[],
                         %(example_ts)s::timestamptz[], %(example_subjects)s::text[])
        AS f(type, version, fingerprint, paths, example, example_event_id, example_ts, example_subject)
), shapes AS (
    INSERT INTO collector_versionshape (type, version, fingerprint, paths, count, first_seen, last_seen, example,
                                        example_event_id, example_ts, example_subject)
    SELECT b.type, b.version, b.fingerprint, coalesce(f.paths, '{}')::jsonb, count(*), min(b.ts), max(b.ts),
           f.example::jsonb, f.example_event_id, f.example_ts, coalesce(f.example_subject, '')
    FROM batch b LEFT JOIN fresh f USING (type, version, fingerprint)
    WHERE b.fingerprint IS NOT NULL
    GROUP BY b.type, b.version, b.fingerprint, f.paths, f.example, f.example_event_id, f.example_ts,
             f.example_subject
    ORDER BY 1, 2, 3
    ON CONFLICT (type, version, fingerprint) DO UPDATE
    SET count = collector_versionshape.count + EXCLUDED.count,
        first_seen = least(collector_versionshape.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(collector_versionshape.last_seen, EXCLUDED.last_seen),
        paths = CASE WHEN collector_versionshape.paths = '{}' THEN EXCLUDED.paths
                     ELSE collector_versionshape.paths END,
        example = coalesce(collector_versionshape.example, EXCLUDED.example),
        example_event_id = CASE WHEN collector_versionshape.example IS NULL THEN EXCLUDED.example_event_id
                                ELSE collector_versionshape.example_event_id END,
        example_ts = CASE WHEN collector_versionshape.example IS NULL THEN EXCLUDED.example_ts
                          ELSE collector_versionshape.example_ts END,
        example_subject = CASE WHEN collector_versionshape.example IS NULL THEN EXCLUDED.example_subject
                               ELSE collector_versionshape.example_subject END
    RETURNING 1
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM hours), (SELECT count(*) FROM shapes)
"""


class Tally:
    """One batch, in memory (no I/O): `add(row)` for each new row keeps its id and its
    shape's fingerprint; shapes new to this process and rows of drifting shapes are kept
    whole."""

    def __init__(self, learner):
        self.learner = learner
        self.ids, self.fingerprints = [], []
        self.first = self.last = None
        self.fresh = {}  # (type, version, fingerprint) -> [count, first row, last row, paths]
        self.drifts = {}  # (type, version, fingerprint) -> [count, first row, last row, reasons]
        self.pending_reasons = {}  # drift verdicts of fresh shapes, kept once committed

    def add(self, row):
        ts = row.ts
        if self.first is None:
            self.first = self.last = ts
        elif ts < self.first:
            self.first = ts
        elif ts > self.last:
            self.last = ts
        self.ids.append(row.id)
        if row.payload is None:
            self.fingerprints.append(None)
            return
        fingerprint, shape = inference.describe(row.payload)
        key = (row.type, row.version or "", fingerprint)
        reasons = self.learner.known.get(key)
        if reasons is None and key not in self.fresh and \
                self.learner.admit(key[0], key[1], fingerprint) == OVERFLOW:
            key = (key[0], key[1], OVERFLOW)
            reasons = self.learner.known.get(key)
        self.fingerprints.append(key[2])
        if reasons is None:  # new to this process: checked for drift when written
            found = self.fresh.get(key)
            if found is None:
                self.fresh[key] = [1, row, row, inference.paths_of(shape) if key[2] != OVERFLOW else {}]
            else:
                found[0] += 1
                found[2] = row
        elif reasons:
            found = self.drifts.get(key)
            if found is None:
                self.drifts[key] = [1, row, row, reasons]
            else:
                found[0] += 1
                found[2] = row

    def empty(self):
        return not self.ids


class Learner:
    """What one collector process remembers between batches: the shapes it has written and
    whether each contradicted its version's schema when it first appeared."""

    def __init__(self):
        self.known = {}  # (type, version, fingerprint) -> drift reasons ([] when none)
        self.per_version = {}  # (type, version) -> distinct shapes seen by this process
        self.stats = {"flushes": 0, "rows": 0, "shapes": 0, "drift": 0, "seconds": 0.0, "failed_flushes": 0}
        self.pending = None  # the Tally of rows not written yet
        self.flushed = time.monotonic()

    def admit(self, type_, version, fingerprint):
        """The fingerprint to count a payload under: its own, or OVERFLOW once its version has
        more shapes than MAX_SHAPES_PER_VERSION in this process."""
        seen = self.per_version.get((type_, version), 0)
        if seen >= MAX_SHAPES_PER_VERSION:
            return OVERFLOW
        self.per_version[(type_, version)] = seen + 1
        return fingerprint

    def report(self):
        return dict(self.stats, known=len(self.known), pending=len(self.pending.ids) if self.pending else 0)


def tally(learner, rows):
    """A Tally of the rows new to the store that name a type."""
    batch = Tally(learner)
    for row in rows:
        if row.id is not None and row.type:
            batch.add(row)
    return batch


def write(learner, batch, cursor):
    """Merge one batch into the store with `cursor` (in the caller's transaction): drift is
    checked first for shapes new to this process, against the schema in the store; then one
    statement (and one more for drift, when there is some)."""
    _check_drift(batch, cursor)
    keys = sorted(batch.fresh)
    examples = []
    for key in keys:
        row = batch.fresh[key][1]
        text = example_of(row.payload) if key[2] != OVERFLOW else None
        examples.append((text, row.id if text else None, row.ts if text else None, row.subject if text else None))
    cursor.execute(MERGE, {
        "ids": batch.ids, "fingerprints": batch.fingerprints, "first": batch.first, "last": batch.last,
        "fresh_types": [k[0] for k in keys], "fresh_versions": [k[1] for k in keys],
        "fresh_fingerprints": [k[2] for k in keys], "paths": [json.dumps(batch.fresh[k][3]) for k in keys],
        "examples": [e[0] for e in examples], "example_ids": [e[1] for e in examples],
        "example_ts": [e[2] for e in examples], "example_subjects": [e[3] for e in examples],
    })
    _merge_drift(cursor, batch.drifts)


def remember(learner, batch):
    """After the commit: the batch's fresh shapes are in the store, with their verdicts."""
    if len(learner.known) > MAX_KNOWN:
        learner.known.clear()
        learner.per_version.clear()
    for key in batch.fresh:
        learner.known.setdefault(key, batch.pending_reasons.get(key, []))


def _check_drift(batch, cursor):
    schemas = {}
    for key, (count, first, last, paths) in batch.fresh.items():
        if key[2] == OVERFLOW:
            batch.pending_reasons[key] = []
            continue
        schema = schemas.get(key[:2])
        if schema is None:
            schema = schemas[key[:2]] = _schema_in_store(cursor, *key[:2])
        # A shape already in the store keeps the verdict it got when it first appeared.
        reasons = schema.drifting.get(key[2], []) if key[2] in schema.fingerprints else inference.drift(paths, schema)
        batch.pending_reasons[key] = reasons
        if reasons:
            batch.drifts[key] = [count, first, last, reasons]


def _schema_in_store(cursor, type_, version):
    cursor.execute("SELECT fingerprint, paths, count FROM collector_versionshape WHERE type = %s AND version = %s",
                   [type_, version])
    rows = cursor.fetchall()
    schema = inference.Schema.from_shapes((_json(paths), count) for _, paths, count in rows)
    schema.fingerprints = {fingerprint for fingerprint, _, _ in rows}
    cursor.execute("SELECT fingerprint, reasons FROM collector_versiondrift WHERE type = %s AND version = %s",
                   [type_, version])
    schema.drifting = {fingerprint: _json(reasons) for fingerprint, reasons in cursor.fetchall()}
    return schema


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


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


def take(learner, rows):
    """Add the rows new to the store that name a type to what waits to be written (no I/O),
    and write it when FLUSH_SECONDS have passed or FLUSH_ROWS wait. Runs in Django's thread."""
    pending = learner.pending or Tally(learner)
    for row in rows:
        if row.id is not None and row.type:
            pending.add(row)
    learner.pending = pending
    if len(pending.ids) >= FLUSH_ROWS or time.monotonic() - learner.flushed >= FLUSH_SECONDS:
        flush(learner)


def flush(learner):
    """Write what waits in one transaction. A failure (the database down) keeps it waiting
    for the next flush, logged; never raised: the batches it came from are stored and acked."""
    from django.db import connection, transaction

    batch, learner.flushed = learner.pending, time.monotonic()
    if batch is None or batch.empty():
        return None
    started = time.perf_counter()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            write(learner, batch, cursor)
    except Exception as error:  # noqa: BLE001 (kept for the next flush, see the docstring)
        learner.stats["failed_flushes"] += 1
        batch.pending_reasons.clear()
        batch.drifts = {key: value for key, value in batch.drifts.items() if key not in batch.fresh}
        log.warning("versions not written (%s); %d rows wait for the next try", error, len(batch.ids))
        return None
    learner.pending = None
    remember(learner, batch)
    stats = learner.stats
    stats["flushes"] += 1
    stats["rows"] += len(batch.ids)
    stats["shapes"] += len(batch.fresh)
    stats["drift"] += sum(v[0] for v in batch.drifts.values())
    stats["seconds"] += time.perf_counter() - started
    return batch


def store_batch(learner, rows):
    """Tally `rows` and write them at once (tests and tools; the collector uses `take`)."""
    take(learner, rows)
    return flush(learner)
