"""Read process settings from environment variables.

Each helper returns a parsed value or raises ConfigError naming the variable, so a
bad setting stops start-up with one line instead of a traceback deep in a driver.
"""
import os
import re
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from collector.secrets import redact_url


class ConfigError(Exception):
    """A process setting is missing or malformed; str() is the one line to print."""


def _raw(name, default):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_str(name, default=None, required=False):
    value = _raw(name, default)
    if required and value is None:
        raise ConfigError(f"{name} is not set")
    return value


def env_bool(name, default=False):
    value = _raw(name, None)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")


def env_int(name, default, minimum=None, maximum=None):
    value = _raw(name, None)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if minimum is not None and number < minimum or maximum is not None and number > maximum:
        raise ConfigError(f"{name}={value!r} is out of range ({minimum}..{maximum})")
    return number


def env_seconds(name, default, maximum=None):
    """A duration in seconds, whole or decimal (`15`, `0.5`); 0 is allowed (off)."""
    value = _raw(name, None)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number of seconds") from None
    if not number >= 0 or maximum is not None and number > maximum:
        raise ConfigError(f"{name}={value!r} is out of range (0..{maximum})")
    return number


def env_port(name, default):
    return env_int(name, default, minimum=1, maximum=65535)


def env_list(name, default):
    value = _raw(name, None)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name, default, schemes, several=False):
    """A URL whose scheme is one of `schemes`; returns the string unchanged. With `several`,
    a comma-separated list of such URLs (a NATS cluster's seed servers). A `unix://` URL
    names a socket path instead of a host."""
    value = _raw(name, default)
    if value is None:
        return None
    urls = [part.strip() for part in value.split(",")] if several else [value]
    if not all(urls):
        raise ConfigError(f"{name}={redact_url(value)!r} has an empty entry in its comma-separated list")
    for url in urls:
        _check_url(name, url, schemes)
    return ",".join(urls)


def _check_url(name, url, schemes):
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{name}={redact_url(url)!r} must start with {' or '.join(s + '://' for s in schemes)}"
        )
    if parts.scheme == "unix":
        if parts.netloc.rpartition("@")[2] or not parts.path.startswith("/"):
            raise ConfigError(f"{name}={redact_url(url)!r} must name a socket path (unix:///path/to/redis.sock)")
        return
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{name}={redact_url(url)!r} has a bad port") from None
    if not parts.hostname and not parse_qs(parts.query).get("host"):
        raise ConfigError(f"{name}={redact_url(url)!r} names no host")


def env_choice(name, default, choices):
    """One of `choices` (compared without case); returns it as spelled in `choices`."""
    value = _raw(name, None)
    if value is None:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")


# A JetStream consumer or stream name: no white space, `.`, `*`, `>`, path separators or
# control characters (the server refuses them, and a name with a dot is read as a subject).
_NATS_NAME = re.compile(r"^[^\s.*>/\\\x00-\x1f\x7f]{1,255}$")


def env_nats_name(name, default):
    """A name NATS accepts for a durable consumer; refused here rather than by the server,
    which would leave every stream unobserved."""
    value = _raw(name, None)
    if value is None:
        return default
    if not _NATS_NAME.match(value):
        raise ConfigError(
            f"{name}={value!r} is not a NATS consumer name (none of . * > / \\ or white space)"
        )
    return value


# Keys people copy from examples and templates; any key containing one of these (spelled
# without separators, any case) is a placeholder, not a secret.
PLACEHOLDER_KEY_MARKERS = ("changeme", "notforproduction", "insecure", "placeholder", "yoursecretkey", "secretkeyhere")


def secret_key_problem(key):
    """Why `key` must not sign anything in production, or None. The rule of Django's check
    security.W009 (at least 50 characters, 5 distinct ones, no `django-insecure-` prefix),
    plus known placeholders."""
    from django.core.checks.security.base import (
        SECRET_KEY_INSECURE_PREFIX,
        SECRET_KEY_MIN_LENGTH,
        SECRET_KEY_MIN_UNIQUE_CHARACTERS,
    )

    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"starts with {SECRET_KEY_INSECURE_PREFIX!r} (a key Django made for development)"
    squeezed = re.sub(r"[\s_\-.]", "", key.lower())
    if any(marker in squeezed for marker in PLACEHOLDER_KEY_MARKERS):
        return "is a placeholder from an example"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct characters"
    return None


def env_secret_key(name, debug):
    """The signing key. Required; with DEBUG off it must also be strong (`secret_key_problem`).
    The error never repeats the key."""
    value = env_str(name, required=True)
    problem = None if debug else secret_key_problem(value)
    if problem:
        raise ConfigError(
            f"{name} {problem}; with DEBUG off it must be a long random value, e.g. the output of "
            f"python -c \"import secrets; print(secrets.token_urlsafe(50))\""
        )
    return value


def celery_redis_url(url):
    """The Celery spelling of a Redis URL: Celery and kombu read a Unix socket as
    `redis+socket:///path?virtual_host=<db>`, where redis-py (the channel layer) reads
    `unix:///path?db=<db>`. Other URLs are returned unchanged."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    query = urlencode([("virtual_host" if key == "db" else key, value) for key, value in parse_qsl(parts.query)])
    # Spelled out: urlunsplit drops the "//" of an empty host, which kombu then misreads.
    return f"redis+socket://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")


def env_hostports(name):
    """An optional comma-separated list of host:port (Kafka's bootstrap servers); a
    `kafka://` prefix is taken off. Returns "host:port,host:port" or None."""
    value = _raw(name, None)
    if value is None:
        return None
    text = value.removeprefix("kafka://")
    entries = [part.strip() for part in text.split(",")]
    for entry in entries:
        host, colon, port = entry.rpartition(":")
        if not entry or not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name}={value!r}: each entry must be host:port (e.g. kafka1:9092,kafka2:9092)")
    return ",".join(entries)


def env_file(name):
    """An optional path that must exist when given (credentials, CA files)."""
    value = _raw(name, None)
    if value is not None and not os.path.isfile(value):
        raise ConfigError(f"{name}={value!r}: no such file")
    return value


def database_from_url(name, url):
    """Django DATABASES entry from a postgresql:// URL (host may be a socket folder in ?host=)."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    dbname = unquote(parts.path.lstrip("/")) or query.pop("dbname", "")
    if not dbname:
        raise ConfigError(f"{name}={redact_url(url)!r} names no database")
    host = query.pop("host", None) or parts.hostname or ""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": dbname,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
