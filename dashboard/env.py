"""Read process settings from environment variables.

Each helper returns a parsed value or raises ConfigError naming the variable, so a
bad setting stops start-up with one line instead of a traceback deep in a driver.
"""
import os
from urllib.parse import parse_qs, unquote, urlsplit

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


def env_url(name, default, schemes):
    """A URL whose scheme is one of `schemes`; returns the string unchanged."""
    value = _raw(name, default)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{name}={redact_url(value)!r} must start with {' or '.join(s + '://' for s in schemes)}"
        )
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{name}={redact_url(value)!r} has a bad port") from None
    if not parts.hostname and not parse_qs(parts.query).get("host"):
        raise ConfigError(f"{name}={redact_url(value)!r} names no host")
    return value


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
