"""One connection's live tail: which forwarded events it is sent, under its filters, its
rate cap and the credit its browser granted; which gaps it must backfill; and the cursor
it can resume from. No I/O here: the consumer feeds it batches and backfilled rows and
sends what it returns, so its rules are unit-tested directly.

Memory stays flat whatever the traffic: nothing waits to be sent. Events above the rate
cap or beyond the credit are counted, not queued (the page shows "showing 200/s of
5,300/s matching"); the ids remembered for de-duplication are references to the batches'
own id lists, for the last OVERLAP of receive time only.
"""
import time
from collections import deque

from collector.live.protocol import ID, OVERLAP, RX

MAX_CREDIT = 5_000  # events a browser may have outstanding, whatever it asks for
QUIET_AFTER = 5.0  # seconds without a batch (heartbeats come every second): the tail is interrupted
FORGET_AFTER = 30.0  # seconds without a batch from a forwarder: it is gone (restarted)


class Source:
    """What a connection knows of one forwarder (one collector process)."""

    __slots__ = ("seq", "rx", "floor", "seen")

    def __init__(self, seq, rx, floor, seen):
        self.seq, self.rx, self.floor, self.seen = seq, rx, floor, seen


class Tail:
    def __init__(self, filters, rate_cap, credit=0, since=None, clock=time.monotonic):
        self.filters = filters
        self.rate_cap = max(1, int(rate_cap))
        self.credit = 0
        self.grant(credit)
        self.clock = clock
        self.tokens = float(self.rate_cap)
        self.refilled = clock()
        self.sources = {}
        self.recent = deque()  # (watermark of a batch, its id list): what this connection has been through
        self.backfilled = {}  # id -> received (microseconds): sent from the store, may still come in a batch
        self.since = since  # the cursor it resumed from, until a batch gives a newer one
        self.counts = {"matching": 0, "shown": 0, "skipped": 0}
        self.counted_since = clock()
        self.started = clock()

    # --- flow control -----------------------------------------------------------------

    def grant(self, count):
        """The browser has drawn `count` events: it may be sent that many more."""
        try:
            count = int(count)
        except (TypeError, ValueError):
            return
        self.credit = min(MAX_CREDIT, self.credit + max(0, count))

    def _refill(self):
        now = self.clock()
        self.tokens = min(float(self.rate_cap), self.tokens + (now - self.refilled) * self.rate_cap)
        self.refilled = now

    # --- batches ------------------------------------------------------------------------

    def gap(self, message):
        """When this batch follows one this connection never got (the channel layer
        dropped it, or the forwarder could not send it): the window to backfill from the
        store, as keyword arguments of `collector.live.readers.backfill`. None otherwise."""
        source = self.sources.get(message["source"])
        if source is None or message["seq"] <= source.seq + 1:
            return None
        exclude = set(message["ids"])
        for _, ids in self.recent:
            exclude.update(ids)
        exclude.update(self.backfilled)
        return {"lo": source.rx - OVERLAP, "hi": message["rx"], "floor": source.floor, "exclude": exclude}

    def take(self, message):
        """The events of a forwarded batch this connection is sent now: those passing its
        filters, not already sent from the store, within its rate cap and credit; an
        evenly spread sample when there are more (the rest are counted)."""
        now = self.clock()
        watermark = message["rx"]
        source = self.sources.get(message["source"])
        if source is None:
            self.sources[message["source"]] = Source(message["seq"], watermark, message["floor"], now)
        else:
            source.seq = max(source.seq, message["seq"])
            source.rx = max(source.rx, watermark)
            source.floor = max(source.floor, message["floor"])
            source.seen = now
        self.since = None
        if message["ids"]:
            self.recent.append((watermark, message["ids"]))
        while self.recent and self.recent[0][0] < watermark - OVERLAP:
            self.recent.popleft()
        events = message["events"]
        if not events:
            return []
        matched = events if self.filters.empty else self._matching(message)
        if self.backfilled:
            matched = [e for e in matched if e[ID] not in self.backfilled]
            horizon = watermark - OVERLAP
            for ident in [i for i, received in self.backfilled.items() if received < horizon]:
                del self.backfilled[ident]
        return self._within_budget(matched)

    def _matching(self, message):
        # Every socket of the process gets the same message object: sockets with the same
        # filters share the filtering, once per batch.
        done = message.setdefault("_matching", {})
        matched = done.get(self.filters)
        if matched is None:
            matched = done[self.filters] = [e for e in message["events"] if self.filters.matches(e)]
        return matched

    def _within_budget(self, matched):
        self._refill()
        budget = min(int(self.tokens), self.credit)
        count = len(matched)
        if count <= budget:
            shown = matched
        elif budget <= 0:
            shown = []
        else:
            # Evenly spread over the batch, not its first events.
            shown = [matched[(i * count) // budget] for i in range(budget)]
        self.tokens -= len(shown)
        self.credit -= len(shown)
        self.counts["matching"] += count
        self.counts["shown"] += len(shown)
        self.counts["skipped"] += count - len(shown)
        return shown

    # --- backfill -----------------------------------------------------------------------

    def backfill_limit(self, ceiling):
        """How many rows a backfill may send now: the credit bounds it, not the rate cap
        (a backfill is one burst, and a bounded one)."""
        return max(0, min(self.credit, ceiling))

    def take_backfill(self, events, missed):
        """Rows read from the store for a gap or a resume: sent marked, remembered so a
        batch bringing one of them later does not show it twice; `missed` (matching rows
        not returned) is counted."""
        events = [e for e in events if e[ID] not in self.backfilled][: self.credit]
        for event in events:
            self.backfilled[event[ID]] = event[RX]
        self.credit -= len(events)
        self.counts["matching"] += len(events) + missed
        self.counts["shown"] += len(events)
        self.counts["skipped"] += missed
        return events

    # --- what the page is told ------------------------------------------------------------

    def cursor(self):
        """Where a reconnect resumes: the oldest watermark and lowest floor of the live
        forwarders (a conservative bound; the overlap brings back rows the page drops by id)."""
        now = self.clock()
        live = [s for s in self.sources.values() if now - s.seen < FORGET_AFTER]
        if not live:
            return self.since
        return {"rx": min(s.rx for s in live), "id": min(s.floor for s in live)}

    def interrupted(self):
        """Why the tail is not live, or None: no forwarder has sent anything for a while."""
        now = self.clock()
        if any(now - s.seen < QUIET_AFTER for s in self.sources.values()):
            return None
        if now - self.started < QUIET_AFTER:
            return None
        return "no collector is forwarding events (none running, or the channel layer is unreachable)"

    def stats(self):
        """Counts since the last call, as rates; resets them."""
        now = self.clock()
        seconds = max(now - self.counted_since, 1e-6)
        counts, self.counts, self.counted_since = self.counts, {"matching": 0, "shown": 0, "skipped": 0}, now
        return {
            "type": "stats",
            "matching": counts["matching"],
            "shown": counts["shown"],
            "skipped": counts["skipped"],
            "seconds": round(seconds, 3),
            "rate_cap": self.rate_cap,
            "credit": self.credit,
            "cursor": self.cursor(),
            "interrupted": self.interrupted(),
        }
