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


class PatternSet:
    """Many patterns against one subject at a time, without trying each: patterns without
    wildcards by a set lookup, the others grouped by their first token."""

    def __init__(self, patterns=()):
        self.exact = set()
        self.by_first = {}  # first token -> [pattern tokens]
        self.open_first = []  # patterns starting with a wildcard
        for pattern in patterns:
            if "*" not in pattern and ">" not in pattern:
                self.exact.add(pattern)
                continue
            tokens = pattern.split(".")
            if tokens[0] in ("*", ">"):
                self.open_first.append(tokens)
            else:
                self.by_first.setdefault(tokens[0], []).append(tokens)

    def matches(self, subject):
        if subject in self.exact:
            return True
        if not self.by_first and not self.open_first:
            return False
        tokens = subject.split(".")
        candidates = self.by_first.get(tokens[0], ())
        return any(_tokens_match(p, tokens) for p in candidates) or any(
            _tokens_match(p, tokens) for p in self.open_first)


def _tokens_match(p_tokens, s_tokens):
    for index, token in enumerate(p_tokens):
        if token == ">":
            return len(s_tokens) > index
        if index >= len(s_tokens):
            return False
        if token != "*" and token != s_tokens[index]:
            return False
    return len(p_tokens) == len(s_tokens)
