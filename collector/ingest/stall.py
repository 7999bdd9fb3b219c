"""Stall detection. A collector can keep beating while storing nothing: a batch that
never commits, a hook that never returns. Its heartbeat alone would call it up, so the
heartbeat also watches the observers' ack floors: a stream whose ack floor has not moved
for `seconds` while its observer consumer has messages pending is stuck, and the
collector is stalled for as long as one is.

Pure (the caller passes what the broker reported and, in tests, the clock).
"""
import time
from datetime import datetime, timedelta, timezone


class StallWatch:
    def __init__(self, seconds, clock=time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.moved = {}  # stream -> (ack floor, since when it stays there with messages pending)

    def observe(self, progress):
        """Take {stream: (ack floor, pending)} and return (reason, since): why the collector
        is stalled and since when (UTC), or ("", None) while every stream moves."""
        now = self.clock()
        stuck = []
        for stream, (floor, pending) in sorted(progress.items()):
            seen = self.moved.get(stream)
            if not pending:
                self.moved.pop(stream, None)  # nothing waits: nothing can be stuck
                continue
            if seen is None or seen[0] != floor:
                self.moved[stream] = (floor, now)
                continue
            still = now - seen[1]
            if still >= self.seconds:
                stuck.append((still, stream, floor, pending))
        for stream in set(self.moved) - set(progress):
            del self.moved[stream]  # a stream gone (or not answering) says nothing about progress
        if not stuck:
            return "", None
        reason = "; ".join(
            f"stream {stream}: ack floor stuck at {floor} for {int(still)} s with {pending} message"
            f"{'' if pending == 1 else 's'} pending"
            for still, stream, floor, pending in stuck
        )
        longest = max(still for still, *_ in stuck)
        return reason, datetime.now(timezone.utc) - timedelta(seconds=longest)
