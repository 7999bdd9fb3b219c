"""What a sampler reads from a broker, in terms that do not depend on the broker: a
JetStream consumer, a Kafka consumer group on a topic (a RabbitMQ queue later)."""
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache


class ReadError(Exception):
    """A broker call of the sampler failed; str() says which and why."""


@dataclass(slots=True)
class StreamReading:
    name: str
    first_seq: int
    last_seq: int
    messages: int
    retention: str  # limits | interest | workqueue
    limited: bool  # the stream removes messages by its own limits (count, bytes, age, per subject)
    subjects: list = field(default_factory=list)


@dataclass(slots=True)
class ConsumerReading:
    stream: str
    name: str
    created: datetime | None
    config: dict  # ack_policy, max_deliver, ack_wait, filter_subjects, deliver_group, pull, deliver_policy, ...
    pending: int  # not yet delivered
    ack_pending: int  # delivered, not acknowledged
    redelivered: int
    waiting: int  # pull requests waiting
    delivered_seq: int  # stream sequence of the last delivery
    delivered_consumer_seq: int
    ack_floor_seq: int  # stream sequence below which everything is acknowledged
    ack_floor_consumer_seq: int
    last_active: datetime | None  # last acknowledgement moving the floor
    delivered_active: datetime | None
    observer: bool = False
    # A source that finds the oldest unprocessed message itself (Kafka: per partition) says
    # so, and gives (time, source) or None in `oldest`.
    own_oldest: bool = False
    oldest: tuple | None = None

    @property
    def lag(self):
        return self.pending + self.ack_pending

    @property
    def filters(self):
        return self.config.get("filter_subjects") or []

    @property
    def processed_floor(self):
        """The stream sequence up to which nothing waits for this consumer: the ack floor,
        or the delivered sequence for a consumer that does not ack."""
        return self.delivered_seq if self.config.get("ack_policy") == "none" else self.ack_floor_seq


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")


@lru_cache(maxsize=65536)
def parse_time(text):
    """RFC 3339 with nanoseconds (more than Python's parser takes); the zero time is None."""
    match = _TIME.match(text or "")
    if not match or match.group(1).startswith("0001-"):
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    when = datetime.fromisoformat(match.group(1) + fraction + ("+00:00" if zone == "Z" else zone))
    return when.astimezone(timezone.utc)
