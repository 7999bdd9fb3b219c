"""Decoding rules from the admin: headers that name type, version, producer or key, on
the subjects a pattern matches, in front of the built-in conventions."""
import dataclasses

from collector import decoders
from collector.ingest.subjects import matches

FIELD_HEADERS = {"type": "type_headers", "version": "version_headers",
                 "producer": "producer_headers", "key": "key_headers"}


class RuleBook:
    """Which `decoders.Rules` apply to a subject; cached per subject."""

    def __init__(self, rules=()):
        by_pattern = {}
        for rule in rules:  # DecodingRule rows (or anything with field, header, subject_pattern)
            by_pattern.setdefault(rule.subject_pattern or ">", []).append(rule)
        self.entries = []
        # More specific patterns first; ">" (every subject) last.
        for pattern in sorted(by_pattern, key=lambda p: (p == ">", -len(p))):
            extra = {}
            for rule in by_pattern[pattern] + (by_pattern.get(">", []) if pattern != ">" else []):
                name = FIELD_HEADERS[rule.field]
                extra.setdefault(name, [])
                if rule.header not in extra[name]:
                    extra[name].append(rule.header)
            changes = {name: tuple(headers) + getattr(decoders.DEFAULT_RULES, name) for name, headers in extra.items()}
            self.entries.append((pattern, dataclasses.replace(decoders.DEFAULT_RULES, **changes)))
        self.cache = {}

    def __getstate__(self):
        # Sent to decode workers with every batch: without the per-subject cache.
        return {"entries": self.entries, "cache": {}}

    def for_subject(self, subject):
        rules = self.cache.get(subject)
        if rules is None:
            rules = next((r for pattern, r in self.entries if matches(pattern, subject)), decoders.DEFAULT_RULES)
            if len(self.cache) > 50_000:
                self.cache.clear()
            self.cache[subject] = rules
        return rules
