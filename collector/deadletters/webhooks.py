"""Where an alert webhook may go, and the POST itself.

A webhook URL is typed by an admin, but the request leaves from inside the network:
link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata hosts are refused
always, loopback and private ranges unless the admin allows private targets. The host is
resolved and every address it resolves to is checked; the POST then connects to one of
those checked addresses (never resolving again, so a name cannot change its answer in
between) and follows no redirect.
"""
import http.client
import ipaddress
import json
import socket
import ssl
from urllib.parse import urlsplit

# Names and addresses of instance metadata services (AWS, GCP, Azure, Oracle, Alibaba …).
# Most sit in 169.254.0.0/16 and are refused as link-local anyway.
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
    "instance-data", "instance-data.ec2.internal",
})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192",
))
PRIVATE_OFF = "a loopback or private address (the admin setting 'allow private webhook targets' is off)"


class Refused(Exception):
    """The target is not allowed; str() says why."""


def static_refusal(url):
    """What can be told from the URL alone (for the admin form): scheme, metadata host names,
    literal link-local or metadata addresses. None when nothing is wrong yet."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "a webhook must be an http:// or https:// URL"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "the webhook URL names no host"
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = address_refusal(address, allow_private=True)
    return f"{host} is {reason}" if reason else None


def address_refusal(address, allow_private):
    """Why `address` may not be a webhook target, or None."""
    if address.version == 6 and (address.ipv4_mapped or address.sixtofour):
        address = address.ipv4_mapped or address.sixtofour
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast:
        return "not a unicast address"
    if address.is_global:
        return None
    # Loopback, private, shared (100.64.0.0/10) and reserved ranges.
    return None if allow_private else PRIVATE_OFF


def checked_addresses(url, allow_private, resolve=socket.getaddrinfo):
    """Resolve the webhook's host and check every address; returns the getaddrinfo entries
    to connect to. Raises Refused (not allowed) or OSError (cannot be resolved)."""
    reason = static_refusal(url)
    if reason:
        raise Refused(reason)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    entries = resolve(parts.hostname, port, type=socket.SOCK_STREAM)
    if not entries:
        raise OSError(f"{parts.hostname} resolves to no address")
    for entry in entries:
        address = ipaddress.ip_address(entry[4][0].split("%", 1)[0])
        reason = address_refusal(address, allow_private)
        if reason:
            shown = "" if str(address) == parts.hostname.strip("[]") else f" resolves to {address}, which"
            raise Refused(f"{parts.hostname}{shown} is {reason}")
    return entries


def post_json(url, body, entries, timeout=5.0):
    """POST `body` as JSON to `url` through one of the checked `entries`; returns the HTTP
    status. Redirects are not followed: a 3xx is returned like any other status."""
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    sock, error = None, None
    for family, kind, proto, _, address in entries:
        candidate = socket.socket(family, kind, proto)
        candidate.settimeout(timeout)
        try:
            candidate.connect(address)
        except OSError as failure:
            candidate.close()
            error = failure
            continue
        sock = candidate
        break
    if sock is None:
        raise error or OSError(f"could not connect to {host}")
    if parts.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        sock = context.wrap_socket(sock, server_hostname=host)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = sock  # already connected to a checked address: http.client does not resolve again
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json", "User-Agent": "Eventscope alerts"})
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


def post(url, body, allow_private, timeout=5.0):
    """POST `body` to a checked target: (posted, the outcome line kept with what was sent).
    A refused target, a failure or an answer other than 2xx is not posted."""
    try:
        status = post_json(url, body, checked_addresses(url, allow_private), timeout)
    except Refused as refused:
        return False, f"refused: {refused}"
    except Exception as error:  # a webhook that is down costs only this delivery
        return False, f"not posted: {error or type(error).__name__}"
    if 200 <= status < 300:
        return True, f"posted: HTTP {status}"
    redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
    return False, f"not posted: HTTP {status}{redirect}"
