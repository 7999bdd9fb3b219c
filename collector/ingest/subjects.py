"""NATS subject patterns: `*` matches one token, `>` one or more trailing tokens."""


def matches(pattern, subject):
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for index, token in enumerate(p_tokens):
        if token == ">":
            return len(s_tokens) > index
        if index >= len(s_tokens):
            return False
        if token != "*" and token != s_tokens[index]:
            return False
    return len(p_tokens) == len(s_tokens)


def any_match(patterns, subject):
    return any(matches(pattern, subject) for pattern in patterns)


def parse_patterns(text):
    """One pattern a line (blank lines and # comments ignored)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]


class Scope:
    """Which subjects are captured: the include list (empty: all) minus the exclude list."""

    def __init__(self, include=(), exclude=()):
        self.include = list(include)
        self.exclude = list(exclude)

    def captures(self, subject):
        if not self.include and not self.exclude:
            return True
        if self.include and not any_match(self.include, subject):
            return False
        return not any_match(self.exclude, subject)
