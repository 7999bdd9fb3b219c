"""RabbitMQ dead letters: copies of what a queue dead-lettered through its dead-letter
exchange, taken by the tap (the application's DLQ queues are left untouched) and
recognised by their `x-death` header, which names the original exchange, routing key
and queue, the reason (rejected, expired, maxlen, delivery_limit) and the count.

A retry (dashboard/deadletters/rabbit_publisher.py) republishes to the original exchange
and routing key: the letter's `stream` and `subject`."""
import json

from collector.deadletters.rules import REASON_HEADER

# RabbitMQ's reasons -> DeadLetter.Reason values.
REASONS = {"rejected": "rejected", "expired": "expired", "maxlen": "maxlen", "delivery_limit": "max_deliveries"}
DEFAULT_EXCHANGE = "amq.default"


def deaths(headers):
    """The `x-death` entries of a stored row (a JSON list, as the tap stores it), or None."""
    text = (headers or {}).get("x-death")
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return [entry for entry in found if isinstance(entry, dict)] if isinstance(found, list) else None


def is_dead_letter(row):
    return row.headers is not None and "x-death" in row.headers and (row.headers.get("amqp-exchange") is not None)


def letter_for(row, event_id):
    """A DeadLetter (unsaved) for a stored RabbitMQ row carrying `x-death`, or None."""
    from collector.models import DeadLetter

    entries = deaths(row.headers)
    if not entries:
        return None
    headers = row.headers
    first_queue = headers.get("x-first-death-queue")
    # The first death names where the message was first published: a retry goes there.
    first = next((e for e in entries if e.get("queue") == first_queue), entries[-1])
    latest = entries[0]
    keys = first.get("routing-keys") or [""]
    exchange = first.get("exchange", headers.get("x-first-death-exchange", "")) or DEFAULT_EXCHANGE
    reason = REASONS.get(str(latest.get("reason")), "")
    notes = [] if reason else [f"x-death reason {latest.get('reason')!r} is not one Eventscope knows"]
    told = headers.get(REASON_HEADER) or headers.get(REASON_HEADER.lower())
    count = latest.get("count")
    letter = DeadLetter(
        key=f"amqp:{row.broker_id}:{row.stream}:{row.seq}:{row.ts.isoformat()}",
        broker_id=row.broker_id,
        reason=reason or (told if told in DeadLetter.Reason.values else DeadLetter.Reason.REJECTED),
        subject=str(keys[0]), dlq_subject=row.subject, stream=exchange, consumer=str(latest.get("queue") or ""),
        stream_seq=None, event_id=event_id, headers=headers, raw=None if row.truncated else bytes(row.raw),
        size=row.size, error=headers.get("x-error", "") or headers.get("X-Error", "") or "",
        deliveries=count if isinstance(count, int) and 0 <= count < 2**31 else None,
        trace_id=row.trace_id or "", span_id=row.span_id or "", first_seen=row.ts, last_seen=row.ts,
    )
    if row.truncated:
        notes.append("stored truncated by the payload size cap: it cannot be retried as it was")
    letter.note = "; ".join(notes)
    return letter
