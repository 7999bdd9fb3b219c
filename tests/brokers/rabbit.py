"""Helpers for tests against the machine's RabbitMQ (127.0.0.1:5672, management on 15672):
each test gets a vhost of its own, so firehose, exchanges and queues never meet another
test's."""
import json
import os
import urllib.request
from base64 import b64encode

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


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRabbit:
    """A RabbitMQ node of a test's own (node name, AMQP, distribution and management ports,
    data dir), for restarts and faults: the shared node on 5672 is never touched."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's, without the switch to the rabbitmq user

    def __init__(self, base):
        import uuid

        self.base = base
        self.node = f"es{uuid.uuid4().hex[:8]}@localhost"
        self.port, self.management_port, self.dist_port = free_port(), free_port(), free_port()
        base.mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.port}\nmanagement.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\nloopback_users = none\n")
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        self.process = None

    @property
    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management(self):
        return f"http://127.0.0.1:{self.management_port}"

    def env(self):
        b = self.base
        return {**os.environ, "HOME": str(b), "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
                "RABBITMQ_LOG_BASE": str(b / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"), "RABBITMQ_PID_FILE": str(b / "pid")}

    def start(self, timeout=60):
        import subprocess
        import time

        if not os.path.exists(self.SERVER):
            pytest.skip("rabbitmq-server (Debian's) is not installed")
        with open(self.base / "out.log", "ab") as out:
            self.process = subprocess.Popen([self.SERVER], env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if management_up(self.management):
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"private RabbitMQ exited: {(self.base / 'out.log').read_text()[-2000:]}")
            time.sleep(0.25)
        raise AssertionError("private RabbitMQ did not start in time")

    def stop(self):
        import signal
        import subprocess

        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.node, "stop"], env=self.env(), capture_output=True,
                       timeout=60, check=False)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


async def reject_one(url, queue):
    """The mailer's consumer gives up on one message: reject without requeue."""
    import aio_pika

    connection_ = await aio_pika.connect(url)
    async with connection_:
        channel = await connection_.channel()
        found = await (await channel.get_queue(queue)).get(timeout=5)
        await found.reject(requeue=False)


async def take_all(url, queue):
    import aio_pika

    connection_ = await aio_pika.connect(url)
    taken = []
    async with connection_:
        channel = await connection_.channel()
        source = await channel.get_queue(queue)
        while True:
            found = await source.get(fail=False, timeout=5)
            if found is None:
                return taken
            await found.ack()
            taken.append(found)


def queue_depth(vhost_url, queue):
    name = vhost_url.rsplit("/", 1)[1]
    return api("GET", f"/api/queues/{name}/{queue}").get("messages")
