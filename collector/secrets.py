"""Keeping secrets out of pages and logs: helpers both the collector and the web side use.
Imports the standard library only."""
import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry a credential (libpq's ?password=, token= of many clients).
_SECRET_PARAM = re.compile(r"pass|token|secret|credential|auth|api_?key", re.I)
# A URL inside free text: a scheme, "://", then anything up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def _redact_one(url):
    if "://" not in url:
        # A bare `user:pass@host:port` (some clients take one): everything before the @ goes.
        return f"{MASK}@{url.rpartition('@')[2]}" if "@" in url else url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        # user:password keeps the user; a lone user part is a token (nats://<token>@host) or a
        # name a reader need not see either way.
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    query = parts.query
    if query and _SECRET_PARAM.search(query):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, MASK if _SECRET_PARAM.search(key) else value) for key, value in pairs], safe="*/")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_url(url):
    """`url` with every credential replaced by `***`: the password of user:password, a token
    or user name given alone (`nats://<token>@host`), and secret query parameters
    (`?password=`). A comma-separated server list (`NATS_URL`) is redacted server by server.
    For pages, logs and error messages."""
    if not url:
        return url
    try:
        return ",".join(_redact_one(part) for part in str(url).split(","))
    except ValueError:  # unparseable (a bad port, say): show nothing of it rather than a secret
        scheme = str(url).partition("://")[0] if "://" in str(url) else ""
        return f"{scheme}://{MASK}" if scheme else MASK


def redact_text(text):
    """`text` with every URL in it passed through `redact_url` (exception messages, reprs)."""
    if not text or "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


class RedactingFormatter(logging.Formatter):
    """A log formatter that passes every line, tracebacks included, through `redact_text`:
    a driver's "cannot connect to redis://:pw@…" or a URL in a repr never reaches the log."""

    def format(self, record):
        return redact_text(super().format(record))
