"""Fixtures of the RabbitMQ tests: a vhost of each test's own on the machine's RabbitMQ, a
private node for restarts, and a bounced mail captured as a dead letter."""
import os
import uuid
from urllib.parse import quote

import pytest

from collector.deadletters import capture
from collector.models import DeadLetter
from tests.brokers.rabbit import (
    AMQP,
    PrivateRabbit,
    api,
    declare,
    management_up,
    queue_depth,
    rabbit_broker,
    reject_one,
)
from tests.brokers.rabbit import publish as amqp_publish
from tests.conftest import run_async, wait_until
from tests.deadletters.conftest import eager_tasks  # noqa: F401


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


@pytest.fixture
def private_rabbit(tmp_path_factory):
    node = PrivateRabbit(tmp_path_factory.mktemp("rabbit")).start()
    yield node
    node.stop()


@pytest.fixture
def bounced(vhost, run_collector):
    """A mailer queue whose dead letters go through the `mail.dlx` exchange to `mail.dlq`,
    a collector tapping it, and one bounced mail captured as a dead letter."""
    from collector.ingest.configuration import load_configuration

    run_async(declare(vhost, [("mail", "direct"), ("mail.dlx", "fanout")]))
    import aio_pika

    async def queues():
        connection_ = await aio_pika.connect(vhost)
        async with connection_:
            channel = await connection_.channel()
            mailer = await channel.declare_queue("mailer", durable=True,
                                                 arguments={"x-dead-letter-exchange": "mail.dlx"})
            await mailer.bind("mail", "send")
            await (await channel.declare_queue("mail.dlq", durable=True)).bind("mail.dlx", "")

    run_async(queues())
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker], installs=[capture.install])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    run_async(amqp_publish(vhost, [("mail", "send", b'{"to": "x@example.com"}', {"X-Error": "mailbox full"},
                                    {"content_type": "application/json"})]))
    wait_until(lambda: queue_depth(vhost, "mailer") == 1, 15, "the mail in its queue")
    run_async(reject_one(vhost, "mailer"))
    letter = wait_until(lambda: DeadLetter.objects.filter(broker=broker).first(), 30, "the dead letter")
    return broker, letter, vhost
