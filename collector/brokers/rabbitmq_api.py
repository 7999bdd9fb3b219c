"""RabbitMQ's management HTTP API (the `rabbitmq_management` plugin): exchanges, bindings,
queues with their depth and consumers, and the per-vhost firehose switch. Every call is
bounded in time; `ManagementError` says the API is missing or refused."""
import json
from base64 import b64encode
from urllib.parse import quote, unquote, urlsplit

import aiohttp

TIMEOUT = 5.0


class ManagementError(Exception):
    pass


def vhost_of(amqp_url):
    """The vhost an AMQP URL names (`/` when its path is empty)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def management_url_for(amqp_url, explicit=None):
    """(base URL, user, password) of the management API: `explicit` (RABBITMQ_MANAGEMENT_URL)
    or the AMQP URL's host on port 15672, https for amqps; credentials from the URL given
    or else the AMQP ones."""
    amqp = urlsplit(amqp_url)
    user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
    if explicit:
        parts = urlsplit(explicit)
        if parts.username:
            user, password = unquote(parts.username), unquote(parts.password or "")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return f"{parts.scheme}://{host}{parts.path.rstrip('/')}", user, password
    scheme = "https" if amqp.scheme == "amqps" else "http"
    return f"{scheme}://{amqp.hostname or '127.0.0.1'}:15672", user, password


class Management:
    def __init__(self, base, user, password):
        self.base = base
        self.headers = {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}
        self._session = None

    @classmethod
    def for_broker(cls, amqp_url, explicit=None):
        return cls(*management_url_for(amqp_url, explicit))

    async def _request(self, method, path, body=None):
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        try:
            async with self._session.request(method, self.base + path, json=body) as response:
                text = await response.text()
                if response.status >= 300:
                    raise ManagementError(f"{method} {path}: HTTP {response.status} {text[:200]}")
                return json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as error:
            raise ManagementError(f"management API at {self.base} unreachable: {error}") from error

    @staticmethod
    def _v(vhost):
        return quote(vhost, safe="")

    async def exchanges(self, vhost):
        return await self._request("GET", f"/api/exchanges/{self._v(vhost)}")

    async def bindings(self, vhost):
        return await self._request("GET", f"/api/bindings/{self._v(vhost)}")

    async def queues(self, vhost):
        return await self._request("GET", f"/api/queues/{self._v(vhost)}")

    async def queue(self, vhost, name):
        return await self._request("GET", f"/api/queues/{self._v(vhost)}/{self._v(name)}")

    async def consumers(self, vhost):
        return await self._request("GET", f"/api/consumers/{self._v(vhost)}")

    async def connections(self):
        return await self._request("GET", "/api/connections")

    async def tracing(self, vhost):
        return bool((await self._request("GET", f"/api/vhosts/{self._v(vhost)}")).get("tracing"))

    async def trace_on(self, vhost):
        """Turn the firehose on for `vhost` (per node and vhost; off after every restart)."""
        await self._request("PUT", f"/api/vhosts/{self._v(vhost)}", {"tracing": True})

    async def close(self):
        if self._session is not None:
            await self._session.close()
