"""Where did a consumer's messages go? One account, as of its latest sample:

    messages on its filter subjects since it began
      = not yet delivered + delivered and unacknowledged + dead + acknowledged
        + removed by the stream before delivery

Every term comes from the broker's own numbers or from the store, except "acknowledged",
which is what is left. The traps: a message that hit max deliveries holds the ack floor below
it, so the ack floor never counts acknowledgements; stream sequences count other subjects too,
so sequences are never subtracted; a pull consumer's MAX_DELIVERIES advisory fires only on its
next pull, so until then its dead message is still delivered and unacknowledged. Where the
store does not hold every message of the consumer's span, the account says by how much instead
of showing numbers that do not add up.
"""
import re
from dataclasses import dataclass, field

from django.db import connection

DEFINITIONS = {
    "total": "Messages on its filter subjects from where it starts to the stream's last sequence, counted in "
             "Eventscope's store.",
    "pending": "Not yet delivered: the broker's num_pending.",
    "ack_pending": "Delivered and not acknowledged: the broker's num_ack_pending. A pull consumer's message that "
                   "reached max deliveries stays here until its next pull, when JetStream declares it dead.",
    "dead": "Given up on: max deliveries reached or terminated by the service, from the dead-letter store "
            "(JetStream's advisories).",
    "removed": "Removed by the stream (limits, purge, delete) before it was delivered: stored messages on its "
               "subjects after its delivered sequence, less num_pending.",
    "acked": "Acknowledged: the rest. Not read from the ack floor, which a dead message holds below itself.",
}
TERMS = ["pending", "ack_pending", "dead", "acked", "removed"]
LABELS = {"total": "messages on its subjects", "pending": "not yet delivered", "ack_pending": "delivered, unacknowledged",
          "dead": "dead", "acked": "acknowledged", "removed": "removed before delivery"}


@dataclass
class Account:
    as_of: object = None
    start_seq: int | None = None
    last_seq: int | None = None
    terms: dict = field(default_factory=dict)
    total: int | None = None
    missing: int = 0  # messages of the span the store does not hold
    note: str = ""

    @property
    def complete(self):
        return self.total is not None and self.missing == 0 and not self.note

    def rows(self):
        return [{"term": key, "label": LABELS[key], "count": self.terms.get(key), "definition": DEFINITIONS[key]}
                for key in TERMS]


def subject_regex(pattern):
    """A NATS subject pattern as a PostgreSQL regular expression."""
    parts = []
    for token in pattern.split("."):
        parts.append({"*": "[^.]+", ">": ".+"}.get(token, re.escape(token)))
    return "^" + r"\.".join(parts) + "$"


def _filter_sql(filters):
    if not filters:
        return "TRUE", []
    return "(" + " OR ".join("subject ~ %s" for _ in filters) + ")", [subject_regex(f) for f in filters]


def account(consumer, sample):
    """The reconciliation of `consumer` as of `sample` (its latest sample that was read)."""
    result = Account(as_of=sample.at if sample else None)
    if sample is None or sample.state != "read" or sample.stream_last_seq is None:
        result.note = "No sample of this consumer was read yet."
        return result
    if consumer.kind == "kafka":
        result.note = ("A Kafka group's messages are accounted for per partition (below, under Partitions): "
                       "its committed offset against the end offset; dead letters are on its DLT topic.")
        return result
    config = consumer.config or {}
    policy = config.get("deliver_policy") or "all"
    last = sample.stream_last_seq
    filters = config.get("filter_subjects") or []
    matching, params = _filter_sql(filters)
    base = "FROM collector_event WHERE broker_id = %s AND stream = %s"
    keys = [consumer.broker_id, consumer.stream]
    with connection.cursor() as cursor:
        if policy == "all":
            start = 1
        elif policy == "by_start_sequence":
            start = int(config.get("opt_start_seq") or 1)
        elif policy in ("new", "by_start_time"):
            since = consumer.created_at if policy == "new" else config.get("opt_start_time")
            cursor.execute(f"SELECT min(seq) {base} AND ts >= %s AND seq <= %s", keys + [since, last])
            start = cursor.fetchone()[0] or last + 1
        else:
            result.note = f"A consumer that starts at the {policy.replace('_', ' ')} message has no fixed span to account for."
            return result
        result.start_seq, result.last_seq = start, last
        cursor.execute(f"SELECT count(*) {base} AND seq BETWEEN %s AND %s", keys + [start, last])
        stored = cursor.fetchone()[0]
        result.missing = max(0, (last - start + 1) - stored) if last >= start else 0
        cursor.execute(f"SELECT count(*) {base} AND seq BETWEEN %s AND %s AND {matching}", keys + [start, last] + params)
        result.total = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) {base} AND seq > %s AND seq <= %s AND {matching}",
                       keys + [max(sample.delivered_seq or 0, start - 1), last] + params)
        after_delivered = cursor.fetchone()[0]
        cursor.execute(
            """
            SELECT count(*) FROM collector_deadletter
            WHERE broker_id = %s AND stream = %s AND consumer = %s AND reason IN ('max_deliveries', 'terminated')
              AND stream_seq BETWEEN %s AND %s AND first_seen <= %s
              AND (%s::timestamptz IS NULL OR first_seen >= %s::timestamptz)
            """,
            keys + [consumer.name, start, last, sample.at, consumer.created_at, consumer.created_at],
        )
        dead = cursor.fetchone()[0]
    removed = after_delivered - sample.pending
    result.terms = {"pending": sample.pending, "ack_pending": sample.ack_pending, "dead": dead, "removed": removed}
    result.terms["acked"] = result.total - sample.pending - sample.ack_pending - dead - removed
    if result.missing:
        result.note = (f"The store lacks {result.missing} of the stream's {last - start + 1} messages in this consumer's "
                       f"span (sequences {start}–{last}): Eventscope's retention dropped them, it started after they "
                       f"were removed from the stream, or it has not stored the newest yet. The terms below count "
                       f"only what the store holds, so they do not add up.")
    elif removed < 0 or result.terms["acked"] < 0:
        result.note = ("The broker's counts moved while this was computed (the sample and the store disagree); "
                       "the next sample will settle it.")
    return result
