"""Which thresholds apply to a consumer, and the webhook posts of its crossings."""
from dataclasses import dataclass

from collector.lag.figures import Limits
from collector.models.lag import DEFAULT_THRESHOLDS

DEFAULT = Limits(**DEFAULT_THRESHOLDS)


@dataclass(frozen=True)
class Applied:
    limits: Limits
    threshold_id: int | None
    webhook: str


class Thresholds:
    """The enabled thresholds of the admin; the most specific one wins: the consumer in its
    stream, then any consumer of that name, then the stream, then every consumer."""

    def __init__(self, rows=()):
        self.by_target = {}
        for ident, stream, consumer, max_lag, max_age, stalled, growing, webhook in rows:
            self.by_target[(stream, consumer)] = Applied(Limits(max_lag, max_age, stalled, growing), ident, webhook)

    def for_consumer(self, stream, name):
        for key in ((stream, name), ("", name), (stream, ""), ("", "")):
            if key in self.by_target:
                return self.by_target[key]
        return Applied(DEFAULT, None, "")


SELECT = """
    SELECT id, stream, consumer, max_lag, max_oldest_age, stalled_after, growing_after, webhook
    FROM collector_lagthreshold WHERE enabled
"""


def crossing_body(crossing, consumer_key, broker):
    stream, name = consumer_key
    return {
        "crossing": crossing["id"], "broker": broker, "stream": stream, "consumer": name,
        "from": crossing["status_from"], "to": crossing["status_to"], "at": crossing["at"].isoformat(),
        "lag": crossing["lag"], "oldest_age_seconds": crossing["oldest_age"], "reason": crossing["reason"],
    }
