"""One sampling round over every consumer of one broker: read them all, derive the
figures, decide statuses, and hand the round to the writer.

    broker (source) ──▶ readings ──▶ oldest message (store, else stream) ──▶ figures, status
                                                                         ──▶ writer (one transaction)

The source is broker-specific (`collector.lag.jetstream`); nothing here is. The recent lag
of each consumer is kept in memory for its rates, so a sampler that takes over from another
shows rates from its second round on.
"""
import asyncio
import json
import logging
import time
from datetime import datetime, timezone

import psycopg

from collector.ingest.subjects import any_match
from collector.lag import figures, writer
from collector.lag.reading import ReadError
from collector.lag.thresholds import Thresholds

log = logging.getLogger("eventscope.lag")

STORE_WALK = 20  # stored messages looked at after a floor before asking the stream
DEAD_SKIPS = 10  # dead messages skipped at most when asking the stream
LOOKUPS = 256  # direct gets in flight


class Sampler:
    def __init__(self, broker_id, source, collector_name=""):
        self.broker_id = broker_id
        self.source = source
        self.collector_name = collector_name
        self.trends = {}  # consumer id -> figures.Trend
        self.growing_since = {}  # consumer id -> when its lag started rising
        self.moved = {}  # consumer id -> last time its floor rose or its lag fell
        self.previous = {}  # consumer id -> (delivered_seq, ack_floor_consumer_seq, lag)
        self.oldest = {}  # consumer id -> (floor, seq, ts, source)
        self.streams = {}  # stream name -> StreamReading of the previous round
        self.latest = {}  # (stream, name) -> dict of the last figures, for the metrics
        self.configs = {}  # consumer id -> configuration last written
        self.rolled = None  # the minute up to which samples are rolled up

    async def sample(self, conn, partitions, now=None):
        """Read, derive and store one round on `conn`; returns (round, crossings)."""
        started = datetime.now(timezone.utc)
        wall, cpu = time.perf_counter(), time.process_time()
        self.timings, self.write_timings = {}, {}
        mark = [wall]

        def phase(name):
            self.timings[name] = self.timings.get(name, 0) + (time.perf_counter() - mark[0]) * 1000
            mark[0] = time.perf_counter()

        now = now or started
        registry = await writer.load_registry(conn, self.broker_id)
        thresholds = Thresholds(await writer.load_thresholds(conn))
        lag_round = writer.Round(at=now)
        try:
            streams = {s.name: s for s in await self.source.streams()}
        except ReadError as error:
            streams = None
            lag_round.note = f"streams not read: {error}"
            log.warning("lag sampler: %s", lag_round.note)
        phase("registry and streams")
        readings, unread = [], {}
        if streams is not None:
            for name, result in (await self.source.all_consumers(list(streams))).items():
                if isinstance(result, ReadError):
                    unread[name] = str(result)
                else:
                    readings.extend(result)
        lag_round.unread_streams = len(unread)
        phase("consumer lists")
        new = [r for r in readings if (r.stream, r.name) not in registry]
        if new:
            registry.update(await writer.register(conn, self.broker_id, self.source.kind, new, now))
        produce = await writer.produce_rates(conn, self.broker_id, now)
        phase("register and rates")
        oldest = await self.oldest_messages(conn, readings, registry, streams or {})
        phase("oldest messages")

        purged = self._purges(streams or {})
        produce_cache = {}
        for reading in readings:
            entry = registry[(reading.stream, reading.name)]
            self._read(lag_round, reading, entry, thresholds, oldest.get(entry.id), purged.get(reading.stream),
                       self._produce_rate(produce_cache, produce, reading), streams.get(reading.stream))
        seen = {(r.stream, r.name) for r in readings}
        for key, entry in registry.items():
            if key in seen or entry.gone_at is not None:
                continue
            if streams is None or key[0] in unread:
                reason = lag_round.note or f"consumers of {key[0]} not read: {unread[key[0]]}"
                self._unread(lag_round, entry, reason)
            else:
                self._gone(lag_round, key, entry, thresholds, streams)
        lag_round.consumers = len(readings)
        if streams is not None:
            self.streams = streams
        phase("derive")
        crossings = await writer.write_round(
            conn, partitions, self.broker_id, self.collector_name, lag_round, started,
            (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, self.write_timings)
        phase("write")
        minute = now.replace(second=0, microsecond=0)
        if self.rolled != minute:
            # Once a minute, the minutes that ended are rolled up from their raw samples.
            try:
                await writer.roll_up(conn, now)
                self.rolled = minute
            except psycopg.DatabaseError as error:
                if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
                    raise
                await conn.rollback()  # the round is stored; the next one tries the rollup again
                log.warning("lag rollup failed: %s", error)
            phase("rollups")
        keys = {entry.id: key for key, entry in registry.items()}
        for crossing in crossings:
            crossing["key"] = keys.get(crossing["consumer_id"])
        return lag_round, crossings

    # --- one consumer ----------------------------------------------------------------

    def _read(self, lag_round, reading, entry, thresholds, oldest, purge, produce_rate, stream):
        now, ident, lag = lag_round.at, entry.id, reading.lag
        previous = self.previous.get(ident)
        reset = None
        if entry.created_at and reading.created and abs((entry.created_at - reading.created).total_seconds()) > 0.001:
            reset = f"recreated at {reading.created.isoformat(timespec='seconds')}: its counts start again"
        elif previous and reading.delivered_seq < previous[0]:
            reset = f"delivered sequence went back from {previous[0]} to {reading.delivered_seq}"
        if reset:
            lag_round.events.append((ident, "reset", reset))
            self.trends.pop(ident, None)
            self.growing_since.pop(ident, None)
            self.oldest.pop(ident, None)
            previous = None
        if entry.gone_at is not None:
            lag_round.events.append((ident, "appeared", "seen again after it was gone"))
        if purge:
            lag_round.events.append((ident, "purge", purge))
        trend = self.trends.setdefault(ident, figures.Trend())
        trend.add(now, lag)
        net = trend.net_rate()
        drain, growing = figures.drain(lag, net)
        if growing:
            self.growing_since.setdefault(ident, now)
        else:
            self.growing_since.pop(ident, None)
        if previous is not None and (reading.ack_floor_consumer_seq > previous[1] or lag < previous[2]):
            self.moved[ident] = now
        self.previous[ident] = (reading.delivered_seq, reading.ack_floor_consumer_seq, lag)
        progress = [t for t in (reading.last_active, self.moved.get(ident)) if t is not None]
        since = max(progress) if progress else (reading.created or now)
        idle = max(0.0, (now - since).total_seconds())
        oldest_ts, source = (oldest or (None, ""))
        age = max(0.0, (now - oldest_ts).total_seconds()) if lag and oldest_ts else (0.0 if not lag else None)
        growing_for = (now - self.growing_since[ident]).total_seconds() if ident in self.growing_since else None
        applied = thresholds.for_consumer(reading.stream, reading.name)
        status, reason = figures.status(lag, age, idle, growing_for, applied.limits)
        changed = status != entry.status
        if changed and not reading.observer:
            lag_round.crossings.append({"consumer_id": ident, "status_from": entry.status, "status_to": status,
                                        "lag": lag, "oldest_age": age, "threshold_id": applied.threshold_id,
                                        "reason": reason, "webhook": applied.webhook})
        note = "" if source or not lag else "oldest message not found in the store or the stream"
        lag_round.rows.append((
            ident, now, "read", reading.pending, reading.ack_pending, reading.redelivered, reading.waiting,
            reading.delivered_seq, reading.ack_floor_seq, stream.first_seq if stream else None,
            stream.last_seq if stream else None, reading.last_active, oldest_ts if lag else None, source,
            figures.consume_rate(produce_rate, net), produce_rate, drain, growing, note or None, age, status, changed,
            self._config_change(ident, reading.config), reading.created,
        ))
        self.latest[(reading.stream, reading.name)] = {"pending": reading.pending, "ack_pending": reading.ack_pending,
                                                       "oldest_age": age or 0.0, "observer": reading.observer}

    def _config_change(self, ident, config):
        """The configuration as JSON when it changed since it was last written, else None."""
        if self.configs.get(ident) == config:
            return None
        self.configs[ident] = config
        return json.dumps(config)

    def _unread(self, lag_round, entry, reason):
        lag_round.rows.append(_figureless(entry.id, lag_round.at, "unread", reason, entry.status, False))

    def _gone(self, lag_round, key, entry, thresholds, streams):
        stream, name = key
        reason = f"stream {stream} was deleted" if stream not in streams else f"consumer {name} no longer exists"
        applied = thresholds.for_consumer(stream, name)
        if not entry.observer:
            lag_round.crossings.append({"consumer_id": entry.id, "status_from": entry.status, "status_to": "gone",
                                        "lag": None, "oldest_age": None, "threshold_id": applied.threshold_id,
                                        "reason": reason, "webhook": applied.webhook})
        lag_round.rows.append(_figureless(entry.id, lag_round.at, "gone", reason, "gone", entry.status != "gone"))
        for state in (self.trends, self.growing_since, self.moved, self.previous, self.oldest, self.configs):
            state.pop(entry.id, None)
        self.latest.pop(key, None)

    def _purges(self, streams):
        """{stream: note} for streams that lost messages no limit of theirs removes: a purge or
        a delete. A stream with limits (or interest / work-queue retention) removes messages
        by itself, so there a removal is no event."""
        notes = {}
        for name, now in streams.items():
            before = self.streams.get(name)
            if before is None or now.limited or now.retention != "limits":
                continue
            removed = (now.last_seq - before.last_seq) - (now.messages - before.messages)
            if removed > 0:
                notes[name] = (f"{removed} message{'s' if removed != 1 else ''} removed from stream {name} "
                               f"(a purge or delete), first sequence now {now.first_seq}")
        return notes

    @staticmethod
    def _produce_rate(cache, produce, reading):
        key = (reading.stream, tuple(reading.filters))
        if key not in cache:
            subjects = produce.get(reading.stream, [])
            if reading.filters:
                cache[key] = sum(rate for subject, rate in subjects if any_match(reading.filters, subject))
            else:
                cache[key] = sum(rate for _, rate in subjects)
        return cache[key]

    # --- the oldest unprocessed message ------------------------------------------------

    async def oldest_messages(self, conn, readings, registry, streams):
        """{consumer id: (ts, 'store' | 'stream')} of the first message after each consumer's
        floor that matches its filter and that it did not give up on. From the store where it
        holds every message from the floor to that one, else from the stream (direct get);
        never guessed. Unchanged floors reuse the last answer."""
        wanted, found_by_source = [], {}
        for reading in readings:
            ident = registry[(reading.stream, reading.name)].id
            if reading.own_oldest:
                self.oldest.pop(ident, None)
                if reading.lag and reading.oldest:
                    found_by_source[ident] = reading.oldest
                continue
            if not reading.lag:
                self.oldest.pop(ident, None)
                continue
            floor = reading.processed_floor
            cached = self.oldest.get(ident)
            stream = streams.get(reading.stream)
            if cached and cached[0] == floor and (stream is None or cached[1] >= stream.first_seq):
                continue
            wanted.append((ident, reading, floor))
        answers = {ident: (cached[2], cached[3]) for ident, cached in self.oldest.items()}
        answers.update(found_by_source)
        if not wanted:
            return answers
        dead = await writer.dead_sequences(conn, self.broker_id, [(r.stream, r.name, floor) for _, r, floor in wanted])
        stored = await writer.stored_after(conn, self.broker_id, [(r.stream, floor) for _, r, floor in wanted], STORE_WALK)
        ask = []
        for (ident, reading, floor), rows in zip(wanted, stored):
            skip = dead.get((reading.stream, reading.name), set())
            stream = streams.get(reading.stream)
            found = _walk_store(rows, floor, reading.filters, skip, stream.first_seq if stream else 0)
            if found:
                self.oldest[ident] = (floor, found[0], found[1], "store")
                answers[ident] = (found[1], "store")
            else:
                ask.append((ident, reading, floor, skip))
        gate = asyncio.Semaphore(LOOKUPS)

        async def from_stream(ident, reading, floor, skip):
            async with gate:
                after = floor
                for _ in range(DEAD_SKIPS + 1):
                    try:
                        found = await self.source.next_message(reading.stream, after, reading.filters)
                    except ReadError as error:
                        log.info("oldest message of %s/%s not read: %s", reading.stream, reading.name, error)
                        return
                    if found is None:
                        answers.pop(ident, None)
                        return
                    if found[0] not in skip:
                        self.oldest[ident] = (floor, found[0], found[1], "stream")
                        answers[ident] = (found[1], "stream")
                        return
                    after = found[0]

        await asyncio.gather(*(from_stream(*item) for item in ask))
        return answers


def _figureless(ident, at, state, note, status, changed):
    """A round row without figures: the consumer is gone, or could not be read."""
    return (ident, at, state) + (None,) * 10 + ("", None, None, None, False, note, None, status, changed, None, None)


def _walk_store(rows, floor, filters, skip, first_seq):
    """(seq, ts) of the first stored message after `floor` on `filters` and not in `skip`,
    provided the store holds every message in between; else None."""
    expected = floor + 1
    for seq, subject, ts in rows:
        if seq != expected or seq < first_seq:
            return None  # a gap (not stored yet, or gone from the stream): ask the stream
        expected += 1
        if seq in skip or (filters and not any_match(filters, subject)):
            continue
        return seq, ts
    return None
