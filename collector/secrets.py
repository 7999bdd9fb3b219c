"""Keeping secrets out of pages and logs: helpers both the collector and the web side use.
Imports the standard library only."""
from urllib.parse import urlsplit


def redact_url(url):
    """`url` with its password replaced by `***`, for pages, logs and error messages."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(":" + parts.password + "@", ":***@", 1)
    return url
