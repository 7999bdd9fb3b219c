"""Who produces and who consumes each version, linked after the fact, one collector at a
time (a transaction-scoped advisory lock; the cursors move in the same transaction, so a
round is counted exactly once however many collectors run):

- the daily counts and each producer's first and last message, from the hourly counts the
  collectors write (summed again, never added to, so they are right however often it runs);
- consumer spans (kind consumer) are joined to the stored event they carried, by message
  id (`messaging.message.id` = the event's id) or else by trace id and subject: processed
  and failed per version and consumer (the span's `messaging.consumer.group.name`, else
  its service); producer spans name the producer's service version and instance;
- dead letters are joined to their stored event: dead letters per version and consumer;
- consumer ack floors (the lag sampler's latest sample of each consumer) are compared with
  the lowest sequence of each version on the consumer's stream and subjects: a floor past
  it means the consumer has processed that version (unless it was created after the
  version's last message there).

Spans are read SETTLE seconds after they were received, so the events they carried are
stored by then; a span whose event is not stored (or carries none) links nothing. A span
committed more than SETTLE seconds after its receive time is missed, and so is a dead letter
whose row commits after a later one was read: limits of a cursor, written down here."""
import json
import logging
import time
from datetime import timedelta

from channels.db import database_sync_to_async

from collector.ingest.subjects import any_match
from collector.waits import pause

log = logging.getLogger("eventscope.versions")

LOCK = 72171  # pg advisory lock key of the versions linker
INTERVAL = 10.0  # seconds between rounds
SETTLE = 5.0  # seconds a span waits before it is linked
CHUNK = timedelta(hours=1)  # of spans per statement
START_BACK = timedelta(days=1)  # how far back a first round reads spans
FLOOR_SAMPLES = timedelta(hours=1)  # ack floors older than this are not read
RECENT = timedelta(hours=2)  # hourly counts this recent are summed into days and producers each round
PRUNE_EVERY = 3600.0  # seconds between two prunes of the versions tables
# What the versions tables keep: hourly counts for a month (longer windows read the daily
# ones), daily counts, producers, shapes and drift for a year (the longest window), producer
# instances for a month. Shapes with their examples outlive the events on purpose.
KEEP = {
    "collector_versionrollup": ("bucket", timedelta(days=35)),
    "collector_versionrollupday": ("bucket", timedelta(days=400)),
    "collector_versiondrift": ("last_seen", timedelta(days=400)),
    "collector_versioninstance": ("last_seen", timedelta(days=35)),
}

LINKED_SPANS = """
CREATE TEMP TABLE version_linked ON COMMIT DROP AS
SELECT s.kind, s.error, s.start, coalesce(m.type, t.type) AS type, coalesce(m.version, t.version, '') AS version,
       coalesce(nullif(s.tags->>'messaging.consumer.group.name', ''), s.service) AS consumer,
       s.service,
       coalesce(s.resource->>'service.version', s.tags->>'service.version', '') AS service_version,
       coalesce(s.resource->>'service.instance.id', s.tags->>'service.instance.id', '') AS instance
FROM collector_span s
LEFT JOIN LATERAL (
    SELECT e.type, e.version FROM collector_event e
    WHERE s.message_id IS NOT NULL AND e.event_id = s.message_id AND e.type IS NOT NULL LIMIT 1
) m ON true
LEFT JOIN LATERAL (
    SELECT e.type, e.version FROM collector_event e
    WHERE s.message_id IS NULL AND e.trace_id = s.trace_id AND e.subject = s.destination AND e.type IS NOT NULL
    LIMIT 1
) t ON true
WHERE s.received_at > %(after)s AND s.received_at <= %(upto)s AND s.start > %(after)s - interval '1 day'
  AND s.kind IN ('consumer', 'producer') AND (s.message_id IS NOT NULL OR s.destination IS NOT NULL)
  AND coalesce(m.type, t.type) IS NOT NULL
"""

MERGE_CONSUMERS = """
INSERT INTO collector_versionconsumer (type, version, consumer, processed, failed, dead_letters, first_processed,
                                       last_processed, last_failed, stream)
SELECT type, version, consumer, count(*) FILTER (WHERE NOT error), count(*) FILTER (WHERE error), 0,
       min(start) FILTER (WHERE NOT error), max(start) FILTER (WHERE NOT error), max(start) FILTER (WHERE error), ''
FROM version_linked WHERE kind = 'consumer' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (type, version, consumer) DO UPDATE
SET processed = collector_versionconsumer.processed + EXCLUDED.processed,
    failed = collector_versionconsumer.failed + EXCLUDED.failed,
    first_processed = least(collector_versionconsumer.first_processed, EXCLUDED.first_processed),
    last_processed = greatest(collector_versionconsumer.last_processed, EXCLUDED.last_processed),
    last_failed = greatest(collector_versionconsumer.last_failed, EXCLUDED.last_failed)
"""

MERGE_INSTANCES = """
INSERT INTO collector_versioninstance (type, version, service, service_version, instance, count, first_seen, last_seen)
SELECT type, version, service, service_version, instance, count(*), min(start), max(start)
FROM version_linked WHERE kind = 'producer' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (type, version, service, service_version, instance) DO UPDATE
SET count = collector_versioninstance.count + EXCLUDED.count,
    first_seen = least(collector_versioninstance.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(collector_versioninstance.last_seen, EXCLUDED.last_seen)
"""

MERGE_DEAD_LETTERS = """
INSERT INTO collector_versionconsumer (type, version, consumer, processed, failed, dead_letters, last_dead_letter,
                                       stream)
SELECT e.type, coalesce(e.version, ''), d.consumer, 0, 0, count(*), max(d.first_seen), max(d.stream)
FROM collector_deadletter d
JOIN LATERAL (SELECT type, version FROM collector_event e WHERE e.id = d.event_id LIMIT 1) e ON true
WHERE d.id > %s AND d.id <= %s AND e.type IS NOT NULL
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (type, version, consumer) DO UPDATE
SET dead_letters = collector_versionconsumer.dead_letters + EXCLUDED.dead_letters,
    last_dead_letter = greatest(collector_versionconsumer.last_dead_letter, EXCLUDED.last_dead_letter),
    stream = CASE WHEN collector_versionconsumer.stream = '' THEN EXCLUDED.stream
                  ELSE collector_versionconsumer.stream END
"""

FLOORS = """
SELECT c.name, c.broker_id, c.stream, c.config, c.created_at, ls.ack_floor_seq, ls.at
FROM collector_consumer c
JOIN LATERAL (
    SELECT ack_floor_seq, at FROM collector_lagsample
    WHERE consumer_id = c.id AND at > now() - %s AND ack_floor_seq IS NOT NULL ORDER BY at DESC LIMIT 1
) ls ON true
WHERE NOT c.observer AND c.gone_at IS NULL
"""

MERGE_FLOORS = """
INSERT INTO collector_versionconsumer (type, version, consumer, processed, failed, dead_letters, floor_passed, stream)
SELECT t, v, c, 0, 0, 0, f, s FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[])
    AS x(t, v, c, f, s)
ON CONFLICT (type, version, consumer) DO UPDATE
SET floor_passed = least(collector_versionconsumer.floor_passed, EXCLUDED.floor_passed),
    stream = CASE WHEN collector_versionconsumer.stream = '' THEN EXCLUDED.stream
                  ELSE collector_versionconsumer.stream END
"""


def install_linker(collector):
    collector.extensions.append(run)


async def run(collector, stop):
    """Extension: a linking round every INTERVAL seconds until the collector stops, and a
    prune of the versions tables once an hour."""
    next_prune = time.monotonic() + 60
    while not stop.is_set():
        try:
            await database_sync_to_async(link_round)()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY
                await database_sync_to_async(prune)()
        except Exception as error:  # noqa: BLE001 (the next round tries again; the cursors did not move)
            log.warning("versions linking round failed: %s", error)
        await pause(stop, INTERVAL)


def prune(now=None):
    """Delete what the versions tables keep no longer (KEEP). Returns {table: rows deleted}."""
    from django.db import connection

    deleted = {}
    with connection.cursor() as cursor:
        for table, (column, keep) in KEEP.items():
            cursor.execute(f"DELETE FROM {table} WHERE {column} < coalesce(%s, now()) - %s", [now, keep])
            deleted[table] = cursor.rowcount
    return deleted


def link_round():
    """One round, if no other collector is running one. Returns what it linked, or None."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s), now()", [LOCK])
        held, now = cursor.fetchone()
        if not held:
            return None
        cursors = _cursors(cursor, now)
        days = _derive(cursor, cursors, now)
        spans = _link_spans(cursor, cursors, now)
        letters = _link_dead_letters(cursor, cursors)
        floors = _link_floors(cursor)
        for name, position in cursors.items():
            cursor.execute(
                "INSERT INTO collector_versioncursor (name, position, updated) VALUES (%s, %s, now()) "
                "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated = now()",
                [name, str(position)],
            )
    return {"days": days, "spans": spans, "dead_letters": letters, "floors": floors}


def _cursors(cursor, now):
    from datetime import datetime

    cursor.execute("SELECT name, position FROM collector_versioncursor")
    found = dict(cursor.fetchall())
    spans = datetime.fromisoformat(found["spans"]) if found.get("spans") else now - START_BACK
    return {"spans": spans, "dead_letters": int(found.get("dead_letters") or 0),
            "rollup": int(found.get("rollup") or 0)}


DERIVE_DAYS = """
INSERT INTO collector_versionrollupday (bucket, type, version, producer, subject, count, bytes)
SELECT date_trunc('day', bucket), type, version, producer, subject, sum(count), sum(bytes)
FROM collector_versionrollup WHERE bucket >= %s AND bucket < %s + interval '1 day'
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (bucket, type, version, producer, subject) DO UPDATE
SET count = EXCLUDED.count, bytes = EXCLUDED.bytes
"""

DERIVE_PRODUCERS = """
INSERT INTO collector_versionproducer (type, version, producer, first_seen, last_seen)
SELECT type, version, producer, min(first_seen), max(last_seen) FROM collector_versionrollup
WHERE ((id > %s AND id <= %s) OR bucket >= %s) AND first_seen IS NOT NULL
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (type, version, producer) DO UPDATE
SET first_seen = least(collector_versionproducer.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(collector_versionproducer.last_seen, EXCLUDED.last_seen)
"""


def _derive(cursor, cursors, now):
    """Days and producers from the hourly counts: the days of hours written lately (or of
    hourly rows new since the last round, a backfill) are summed again whole, so they are
    right however many collectors wrote the hours; producers take the least first and the
    greatest last time. An hour older than RECENT updated (not inserted) after the round that
    read it is missed: a limit of reading by recency."""
    recent = (now - RECENT).replace(minute=0, second=0, microsecond=0)
    cursor.execute("SELECT coalesce(max(id), 0) FROM collector_versionrollup")
    highest = cursor.fetchone()[0]
    cursor.execute("SELECT DISTINCT date_trunc('day', bucket) FROM collector_versionrollup "
                   "WHERE (id > %s AND id <= %s) OR bucket >= %s", [cursors["rollup"], highest, recent])
    days = sorted(row[0] for row in cursor.fetchall())
    for day in days:
        cursor.execute(DERIVE_DAYS, [day, day])
    cursor.execute(DERIVE_PRODUCERS, [cursors["rollup"], highest, recent])
    cursors["rollup"] = highest
    return len(days)


def _link_spans(cursor, cursors, now):
    upto_all = now - timedelta(seconds=SETTLE)
    linked = 0
    after = cursors["spans"]
    while after < upto_all:
        upto = min(upto_all, after + CHUNK)
        cursor.execute("DROP TABLE IF EXISTS version_linked")
        cursor.execute(LINKED_SPANS, {"after": after, "upto": upto})
        cursor.execute("SELECT count(*) FROM version_linked")
        linked += cursor.fetchone()[0]
        cursor.execute(MERGE_CONSUMERS)
        cursor.execute(MERGE_INSTANCES)
        cursor.execute("DROP TABLE version_linked")
        after = upto
    cursors["spans"] = after
    return linked


def _link_dead_letters(cursor, cursors):
    cursor.execute("SELECT coalesce(max(id), 0) FROM collector_deadletter")
    highest = cursor.fetchone()[0]
    if highest <= cursors["dead_letters"]:
        cursors["dead_letters"] = min(cursors["dead_letters"], highest)
        return 0
    cursor.execute(MERGE_DEAD_LETTERS, [cursors["dead_letters"], highest])
    count = cursor.rowcount
    cursors["dead_letters"] = highest
    return count


def _link_floors(cursor):
    cursor.execute(FLOORS, [FLOOR_SAMPLES])
    consumers = cursor.fetchall()
    if not consumers:
        return 0
    streams = sorted({(broker, stream) for _, broker, stream, *_ in consumers})
    cursor.execute(
        "SELECT broker_id, stream, subject, type, version, min_seq, last_seen FROM collector_versionstream "
        "WHERE (broker_id, stream) IN (SELECT * FROM unnest(%s::int8[], %s::text[]))",
        [[b for b, _ in streams], [s for _, s in streams]],
    )
    by_stream = {}
    for broker, stream, subject, type_, version, min_seq, last_seen in cursor.fetchall():
        by_stream.setdefault((broker, stream), []).append((subject, type_, version, min_seq, last_seen))
    passed = {}
    for name, broker, stream, config, created_at, floor, at in consumers:
        config = json.loads(config) if isinstance(config, (str, bytes)) else (config or {})
        filters = config.get("filter_subjects") or []
        for subject, type_, version, min_seq, last_seen in by_stream.get((broker, stream), []):
            if floor < min_seq or (filters and not any_match(filters, subject)):
                continue
            if created_at is not None and created_at > last_seen:
                continue  # made after the version's last message there: it never saw one
            key = (type_, version, name)
            passed[key] = min(passed.get(key, (at, stream))[0], at), stream
    if not passed:
        return 0
    keys = sorted(passed)
    cursor.execute(MERGE_FLOORS, [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                                  [passed[k][0] for k in keys], [passed[k][1] for k in keys]])
    return len(keys)
