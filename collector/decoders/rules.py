"""The decoding rules an operator edits in the admin: which headers and payload fields name an event's
type, version, producer, key and id, and how a version hides in a type suffix or a schema URL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rules:
    """Decoding rules (edited in the admin). Header names are matched case-insensitively; field paths are
    dotted keys into a JSON object payload (``meta.type``). Constructing Rules validates and compiles the
    patterns once (build one per change of the rules, not per message) and raises ValueError, so a form
    can check an operator's edit by building one."""

    version_headers: tuple[str, ...] = (
        "version", "event-version", "x-event-version", "Micro-Version", "schema-version", "x-schema-version",
    )
    # amqp-*: AMQP message properties, as the RabbitMQ tap stores them.
    type_headers: tuple[str, ...] = ("type", "event-type", "x-event-type", "message-type", "Micro-Event-Type",
                                     "amqp-type")
    producer_headers: tuple[str, ...] = (
        "Micro-From-Service", "producer", "service", "x-service", "x-producer", "app-id", "amqp-app-id",
    )
    key_headers: tuple[str, ...] = ("key", "message-key", "partition-key", "partitionkey", "x-message-key")
    # Nats-Msg-Id is a deduplication id; producers usually set it to the event id, so it comes last.
    id_headers: tuple[str, ...] = ("Micro-Id", "event-id", "x-event-id", "message-id", "id", "amqp-message-id",
                                   "Nats-Msg-Id")
    schema_headers: tuple[str, ...] = ("dataschema", "schema", "x-schema", "schema-url")
    payload_type_fields: tuple[str, ...] = ("type", "event_type", "eventType")
    payload_version_fields: tuple[str, ...] = (
        "version", "event_version", "eventVersion", "schema_version", "schemaVersion",
    )
    payload_id_fields: tuple[str, ...] = ("event_id", "eventId")
    # Whole numbers or semantic versions: order.created.v2, order.created.v1.2.0, .../v1.2.0.json
    type_version_suffix: str = r"^(?P<type>.+?)[._-][vV](?P<version>\d+(?:\.\d+){0,2})$"
    schema_version: str = r"/[vV](?P<version>\d+(?:\.\d+){0,2})(?:[/#?.]|$)"
    # Some systems publish each event type on its own subject: take the type from it when nothing else names it.
    type_from_subject: bool = False
    max_depth: int = 256
    max_label_length: int = 256

    _index: dict = field(init=False, repr=False, compare=False, hash=False)
    _ce_index: dict = field(init=False, repr=False, compare=False, hash=False)
    _paths: dict = field(init=False, repr=False, compare=False, hash=False)
    _suffix: re.Pattern = field(init=False, repr=False, compare=False, hash=False)
    _schema: re.Pattern = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        set_ = object.__setattr__
        # Header name -> [(field, rank)], so a message's few headers are looked up instead of every rule name.
        index, ce_index = {}, {}
        for what in ("version", "type", "producer", "key", "id", "schema"):
            attr = what + "_headers"
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise ValueError(f"{attr} must be a list of header names")
            set_(self, attr, tuple(value))
            for rank, name in enumerate(n.strip().lower() for n in value):
                index.setdefault(name, []).append((what, rank))
                if what in ("version", "key"):
                    # CloudEvents extension attribute names are lowercase letters and digits only.
                    ce_index.setdefault(name.replace("-", "").replace("_", ""), []).append((what, rank))
        paths = {}
        for attr in ("payload_type_fields", "payload_version_fields", "payload_id_fields"):
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise ValueError(f"{attr} must be a list of field paths")
            set_(self, attr, tuple(value))
            paths[attr] = tuple(tuple(p.split(".")) for p in value if p)
        for attr in ("max_depth", "max_label_length"):
            if not isinstance(getattr(self, attr), int) or getattr(self, attr) < 1:
                raise ValueError(f"{attr} must be a positive integer")
        set_(self, "_index", index)
        set_(self, "_ce_index", ce_index)
        set_(self, "_paths", paths)
        set_(self, "_suffix", _compile(self.type_version_suffix, "type_version_suffix"))
        set_(self, "_schema", _compile(self.schema_version, "schema_version"))


def _compile(pattern: str, attr: str) -> re.Pattern:
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError(f"{attr} is not a valid regular expression: {exc}") from None
    if "version" not in compiled.groupindex:
        raise ValueError(f"{attr} must have a named group (?P<version>...)")
    return compiled


DEFAULT_RULES = Rules()
