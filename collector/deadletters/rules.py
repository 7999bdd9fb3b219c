"""Dead-letter conventions: which subjects are DLQ subjects, which headers name the
original topic, the error and the attempts, and the provenance headers of a retry.
Pure, but for `DlqRules.load`, which reads `DeadLetterSettings`."""
import re

from collector.ingest.subjects import parse_patterns

RETRY_OF = "Eventscope-Retry-Of"
RETRY_ATTEMPT = "Eventscope-Attempt"
RETRIED_BY = "Eventscope-Retried-By"
REASON_HEADER = "X-Dead-Letter-Reason"  # a service may say why, with one of the reason values
MAX_DELIVERIES = 2**31 - 1  # the largest delivery count the column holds
_WHOLE_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


def dlq_match(pattern, subject):
    """The tokens `pattern`'s wildcards matched in `subject`, or None when it does not match.
    `*` is one token; `>` is one or more tokens wherever it stands, so `>.dlq` is any
    subject ending in `.dlq`."""
    return _match(pattern.split("."), subject.split("."))


def _match(pattern, tokens):
    if not pattern:
        return [] if not tokens else None
    head, rest = pattern[0], pattern[1:]
    if head == ">":
        for taken in range(len(tokens) - len(rest), 0, -1):
            found = _match(rest, tokens[taken:])
            if found is not None:
                return tokens[:taken] + found
        return None
    if not tokens or (head != "*" and head != tokens[0]):
        return None
    found = _match(rest, tokens[1:])
    if found is None:
        return None
    return ([tokens[0]] if head == "*" else []) + found


class DlqRules:
    """The DLQ conventions from `DeadLetterSettings`, ready to apply to stored rows."""

    def __init__(self, patterns, topic_headers, error_headers, attempts_headers):
        self.patterns = patterns
        self.topic_headers = [h.lower() for h in topic_headers]
        self.error_headers = [h.lower() for h in error_headers]
        self.attempts_headers = [h.lower() for h in attempts_headers]

    @classmethod
    def load(cls):
        from collector.models import DeadLetterSettings

        found = DeadLetterSettings.load()
        return cls(parse_patterns(found.dlq_patterns), parse_patterns(found.topic_headers),
                   parse_patterns(found.error_headers), parse_patterns(found.attempts_headers))

    def original_topic(self, subject):
        """The topic a DLQ subject stands for, or None when `subject` is no DLQ subject."""
        for pattern in self.patterns:
            tokens = dlq_match(pattern, subject)
            if tokens:
                return ".".join(tokens)
        return None

    def letter_for(self, row, event_id):
        """A DeadLetter (unsaved) for a stored row on a DLQ subject, or None."""
        from collector.models import DeadLetter

        topic = self.original_topic(row.subject)
        if topic is None:
            return None
        names = {k.lower(): k for k in (row.headers or {})}
        headers = {k.lower(): v for k, v in (row.headers or {}).items()}
        topic = _first(headers, self.topic_headers) or topic
        notes = []
        attempts_name = next((name for name in self.attempts_headers if headers.get(name)), None)
        deliveries = None
        if attempts_name is not None:
            deliveries, note = parse_deliveries(names[attempts_name], headers[attempts_name])
            notes += [note] if note else []
        reason = headers.get(REASON_HEADER.lower(), "")
        if reason and reason not in DeadLetter.Reason.values:
            notes.append(f"header {names[REASON_HEADER.lower()]}: {_shown(reason)} is not a known reason")
        letter = DeadLetter(
            key=f"dlq:{row.broker_id}:{row.stream}:{row.seq}:{row.ts.isoformat()}",
            broker_id=row.broker_id,
            reason=reason if reason in DeadLetter.Reason.values else DeadLetter.Reason.DLQ_SUBJECT,
            subject=topic, dlq_subject=row.subject, stream=row.stream, consumer=row.producer or "",
            stream_seq=row.seq if row.stream else None, event_id=event_id, headers=row.headers,
            raw=None if row.truncated else bytes(row.raw), size=row.size,
            error=_first(headers, self.error_headers) or "",
            deliveries=deliveries,
            trace_id=row.trace_id or "", span_id=row.span_id or "", first_seen=row.ts, last_seen=row.ts,
        )
        if row.truncated:
            notes.append("stored truncated by the payload size cap: it cannot be retried as it was")
        letter.note = "; ".join(notes)
        return letter


def parse_deliveries(name, value):
    """(delivery count, "") from an attempts header, or (None, a note saying why not): a
    bad header value is kept with the dead letter as a note, never a reason to refuse it."""
    text = str(value).strip()
    if not _WHOLE_NUMBER.fullmatch(text):
        return None, f"header {name}: {_shown(value)} is not a whole number of attempts"
    # Length first: int() refuses strings of more than 4300 digits.
    if len(text.lstrip("0")) > len(str(MAX_DELIVERIES)) or int(text) > MAX_DELIVERIES:
        return None, f"header {name}: {_shown(value)} attempts is more than can be stored (at most {MAX_DELIVERIES})"
    return int(text), ""


def _shown(value, limit=80):
    text = repr(str(value))
    return text if len(text) <= limit else text[:limit] + "…'"


def _first(headers, names):
    for name in names:
        if headers.get(name):
            return headers[name]
    return None
