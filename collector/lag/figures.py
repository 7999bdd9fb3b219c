"""The figures derived from a consumer's samples, and its status: pure functions, so
tests call them with plain numbers.

- lag: not yet delivered + delivered and unacknowledged (the broker's own counts; never negative)
- net rate: how fast the lag changes, over the last few samples (messages/s, + grows)
- consume rate: produce rate on its filter subjects minus the net rate (never below 0)
- drain estimate: lag / -(net rate) while the lag shrinks; "growing" while it rises
"""
from collections import deque
from dataclasses import dataclass

RATE_SAMPLES = 6  # the net rate spans this many intervals (one minute at the default 10 s)


@dataclass(frozen=True)
class Limits:
    max_lag: int
    max_oldest_age: float
    stalled_after: float
    growing_after: float


class Trend:
    """The last few (time, lag) of one consumer."""

    def __init__(self):
        self.points = deque(maxlen=RATE_SAMPLES + 1)

    def add(self, at, lag):
        self.points.append((at, lag))

    def net_rate(self):
        if len(self.points) < 2:
            return None
        (start, first), (end, last) = self.points[0], self.points[-1]
        seconds = (end - start).total_seconds()
        return (last - first) / seconds if seconds > 0 else None


def drain(lag, net_rate):
    """(seconds to drain or None, growing)."""
    if lag <= 0:
        return 0.0, False
    if net_rate is None or net_rate == 0:
        return None, False
    if net_rate < 0:
        return lag / -net_rate, False
    return None, True


def consume_rate(produce_rate, net_rate):
    if net_rate is None or produce_rate is None:
        return None
    return max(0.0, produce_rate - net_rate)


def status(lag, oldest_age, idle_seconds, growing_for, limits):
    """(status, reason): stalled before growing before lagging before ok."""
    if lag > 0 and idle_seconds is not None and idle_seconds >= limits.stalled_after:
        return "stalled", f"{lag} waiting and nothing acknowledged for {idle_seconds:.0f} s (limit {limits.stalled_after:.0f} s)"
    if lag > 0 and growing_for is not None and growing_for >= limits.growing_after:
        return "growing", f"lag rising for {growing_for:.0f} s (limit {limits.growing_after:.0f} s), now {lag}"
    if lag > limits.max_lag:
        return "lagging", f"lag {lag} above {limits.max_lag}"
    if oldest_age is not None and oldest_age > limits.max_oldest_age:
        return "lagging", f"oldest unprocessed message {oldest_age:.0f} s old (limit {limits.max_oldest_age:.0f} s)"
    return "ok", ""
