"""Helpers for tests against the machine's RabbitMQ (127.0.0.1:5672, management on 15672):
each test gets a vhost of its own, so firehose, exchanges and queues never meet another
test's."""
import json
import os
import urllib.request
import uuid
from base64 import b64encode
from urllib.parse import quote

import pytest

AMQP = os.environ.get("EVENTSCOPE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")
MANAGEMENT = os.environ.get("EVENTSCOPE_TEST_RABBITMQ_MANAGEMENT", "http://127.0.0.1:15672")


def api(method, path, body=None, base=MANAGEMENT):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Basic " + b64encode(b"guest:guest").decode(),
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


def management_up(base=MANAGEMENT):
    try:
        api("GET", "/api/overview", base=base)
        return True
    except OSError:
        return False


@pytest.fixture
def vhost():
    """A fresh vhost on the shared RabbitMQ (guest may use it); its AMQP URL."""
    if not management_up():
        if os.environ.get("CI"):
            raise AssertionError("RabbitMQ's management API does not answer on 15672")
        pytest.skip("RabbitMQ with its management plugin is not running on 127.0.0.1")
    name = f"es-{uuid.uuid4().hex[:10]}"
    api("PUT", f"/api/vhosts/{quote(name, safe='')}", {})
    api("PUT", f"/api/permissions/{quote(name, safe='')}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    yield f"{AMQP}/{quote(name, safe='')}"
    api("DELETE", f"/api/vhosts/{quote(name, safe='')}")


def rabbit_broker(url, name="rabbit"):
    from collector.models import Broker

    return Broker.objects.create(name=name, kind="rabbitmq", url=url)


async def declare(url, exchanges=(), queues=()):
    """exchanges: [(name, type)]; queues: [(name, exchange, key, arguments)]."""
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for name, kind in exchanges:
            await channel.declare_exchange(name, kind, durable=True)
        for name, exchange, key, arguments in queues:
            queue = await channel.declare_queue(name, durable=True)
            if exchange:
                await queue.bind(exchange, key, arguments=arguments)


async def publish(url, messages, confirm=True):
    """messages: [(exchange, routing key, body, headers, properties)]."""
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=confirm)
        for exchange, key, body, headers, properties in messages:
            target = channel.default_exchange if not exchange else await channel.get_exchange(exchange)
            await target.publish(aio_pika.Message(body, headers=headers or None, **(properties or {})), key)
