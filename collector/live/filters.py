"""What a live client asks to see: a subject pattern with NATS wildcards (`orders.*`,
`payments.>`), a service (producer), a type, a version and a text the event contains.
Pure: the forwarded events and the backfilled rows go through the same `matches`."""
import re
from dataclasses import asdict, dataclass
from functools import lru_cache

from collector.ingest.subjects import matches as subject_matches
from collector.live.protocol import KEY, PREVIEW, SERVICE, SUBJECT, TYPE, VERSION

FIELDS = ("subject", "service", "type", "version", "text")
MAX_LENGTH = 500


class BadFilter(ValueError):
    """A filter the tail cannot use; str() says why, for the page and the socket."""


def check_pattern(pattern):
    """A NATS subject pattern: dot-separated tokens, `*` a whole token, `>` only the last."""
    tokens = pattern.split(".")
    for index, token in enumerate(tokens):
        if not token:
            raise BadFilter(f"subject {pattern!r}: empty token (two dots, or a dot at an end)")
        if any(c.isspace() for c in token):
            raise BadFilter(f"subject {pattern!r}: no spaces in a subject")
        if token == ">" and index != len(tokens) - 1:
            raise BadFilter(f"subject {pattern!r}: > must be the last token")
        if token not in ("*", ">") and ("*" in token or ">" in token):
            raise BadFilter(f"subject {pattern!r}: a wildcard must be a whole token, like orders.* or orders.>")


@lru_cache(maxsize=65_536)
def _subject_passes(pattern, subject):
    # Every connection of a web process checks every forwarded event, and a bus has far
    # fewer subjects than events: remember the answers.
    return subject_matches(pattern, subject)


def pattern_regex(pattern):
    """A PostgreSQL (and Python) regular expression matching what the pattern matches."""
    parts = []
    for token in pattern.split("."):
        if token == "*":
            parts.append(r"[^.]+")
        elif token == ">":
            parts.append(r"[^.]+(\.[^.]+)*")
        else:
            parts.append(re.escape(token))
    return "^" + r"\.".join(parts) + "$"


@dataclass(frozen=True)
class Filters:
    subject: str = ""
    service: str = ""
    type: str = ""
    version: str = ""
    text: str = ""

    @classmethod
    def parse(cls, params):
        """From a query string or a subscribe message; raises BadFilter with the reason."""
        if params is None:
            params = {}
        if not hasattr(params, "get"):
            raise BadFilter("filters must be an object")
        values = {}
        for name in FIELDS:
            value = params.get("q" if name == "text" and "q" in params else name, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise BadFilter(f"{name} must be text")
            value = value.strip()
            if len(value) > MAX_LENGTH:
                raise BadFilter(f"{name} is longer than {MAX_LENGTH} characters")
            values[name] = value
        if values["subject"]:
            check_pattern(values["subject"])
        return cls(**values)

    @property
    def empty(self):
        return not any(asdict(self).values())

    def as_dict(self):
        return asdict(self)

    def matches(self, event):
        """Whether a shaped event (see `protocol.shape`) passes every filter set."""
        if self.subject and not _subject_passes(self.subject, event[SUBJECT]):
            return False
        if self.service and event[SERVICE] != self.service:
            return False
        if self.type and event[TYPE] != self.type:
            return False
        if self.version and event[VERSION] != self.version:
            return False
        if self.text:
            needle = self.text.lower()
            return any(needle in event[field].lower() for field in (SUBJECT, TYPE, SERVICE, KEY, PREVIEW))
        return True
