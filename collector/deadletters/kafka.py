"""Kafka dead-letter topics: which topics carry dead letters (`<topic>.DLT`, `<topic>-dlq`,
`dlq.<topic>` ... from `DeadLetterSettings.kafka_dlt_patterns`), and what their headers say.

Spring Kafka's DeadLetterPublishingRecoverer adds `kafka_dlt-original-topic`, `-partition`
(a 4-byte big-endian int), `-offset` (8-byte long), `-consumer-group`, `kafka_dlt-exception-
fqcn` and `-message`; Kafka Connect's error reporter adds `__connect.errors.topic`,
`.partition`, `.offset` (as text), `.connector.name`, `.exception.class.name` and
`.exception.message`. Where present they name the original topic and position, the consumer
and the error; where not, the pattern names the topic. Pure, but for `KafkaDltRules.load`."""
import re
import struct

from collector.brokers.kafka import as_bytes, position

SPRING = "kafka_dlt-"
CONNECT = "__connect.errors."


class KafkaDltRules:
    def __init__(self, patterns):
        self.patterns = []
        for pattern in patterns:
            if pattern.count("*") == 1:
                head, tail = pattern.split("*")
                self.patterns.append((head, tail))

    @classmethod
    def load(cls):
        from collector.models import DeadLetterSettings

        text = DeadLetterSettings.load().kafka_dlt_patterns
        return cls([line.strip() for line in text.splitlines() if line.strip()])

    def original_topic(self, topic):
        """The topic a DLT topic stands for, or None when `topic` is no dead-letter topic."""
        for head, tail in self.patterns:
            if len(topic) > len(head) + len(tail) and topic.startswith(head) and topic.endswith(tail):
                return topic[len(head):len(topic) - len(tail)]
        return None

    def letter_for(self, row, event_id):
        """A DeadLetter (unsaved) for a stored Kafka record on a dead-letter topic, or None."""
        from collector.models import DeadLetter

        topic = self.original_topic(row.subject)
        headers = row.headers or {}
        if topic is None and not headers.get(CONNECT + "topic"):
            return None
        notes = []
        original = _text(headers.get(SPRING + "original-topic")) or _text(headers.get(CONNECT + "topic")) or topic
        partition = _number(headers.get(SPRING + "original-partition"), 4) if SPRING + "original-partition" in headers \
            else _number(headers.get(CONNECT + "partition"), None)
        offset = _number(headers.get(SPRING + "original-offset"), 8) if SPRING + "original-offset" in headers \
            else _number(headers.get(CONNECT + "offset"), None)
        seq = None
        if partition is not None and offset is not None:
            try:
                seq = position(partition, offset)
            except ValueError as error:
                notes.append(str(error))
        error_class = (_text(headers.get(SPRING + "exception-fqcn"))
                       or _text(headers.get(CONNECT + "exception.class.name")))
        message = _text(headers.get(SPRING + "exception-message")) or _text(headers.get(CONNECT + "exception.message"))
        consumer = (_text(headers.get(SPRING + "original-consumer-group"))
                    or _text(headers.get(CONNECT + "connector.name")) or "")
        letter = DeadLetter(
            key=f"dlq:{row.broker_id}:{row.stream}:{row.seq}:{row.ts.isoformat()}",
            broker_id=row.broker_id, reason=DeadLetter.Reason.DLQ_SUBJECT, subject=original, dlq_subject=row.subject,
            stream=original, consumer=consumer, stream_seq=seq, message_key=row.key, event_id=event_id,
            headers=row.headers, raw=None if row.truncated else bytes(row.raw), size=row.size,
            error=": ".join(part for part in (error_class, message) if part), deliveries=None,
            trace_id=row.trace_id or "", span_id=row.span_id or "", first_seen=row.ts, last_seen=row.ts,
        )
        if row.truncated:
            notes.append("stored truncated by the payload size cap: it cannot be retried as it was")
        letter.note = "; ".join(notes)
        return letter


def is_error_header(name):
    """Headers a dead-letter topic added, which a retry does not send back."""
    lowered = name.lower()
    return lowered.startswith(SPRING) or lowered.startswith(CONNECT)


def _text(value):
    if value is None:
        return ""
    raw = as_bytes(str(value))
    return raw.decode("utf-8", "replace").strip()


def _number(value, width):
    """A header's integer: Spring's big-endian binary (`width` bytes) or Connect's text."""
    if value is None:
        return None
    raw = as_bytes(str(value))
    if width and len(raw) == width:
        return struct.unpack(">i" if width == 4 else ">q", raw)[0]
    text = raw.decode("ascii", "replace").strip()
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None
