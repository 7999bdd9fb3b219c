"""The shop's mail over RabbitMQ (when RABBITMQ_URL is set), so both brokers show on every
page: a relay takes each `email.requested` from NATS and publishes it to the topic exchange
`<ns>shop.mail`; two `mailer-amqp` instances share the `<ns>mailer` queue (load-balanced)
and reject what bounces, which RabbitMQ dead-letters through the `<ns>shop.mail.dlx`
fanout exchange into `<ns>mail.bounced`; an `audit` service has one exclusive queue per
instance bound to the `<ns>shop.broadcast` fanout (broadcast), which gets every receipt.
"""
import asyncio
import hashlib
import logging
from collections import Counter
from datetime import UTC, datetime

import aio_pika

log = logging.getLogger(__name__)

MAILERS = 2
AUDITORS = 2


class Topology:
    """The exchanges and queues of the mail, under the shop's namespace."""

    def __init__(self, namespace=""):
        prefix = f"{namespace}." if namespace else ""
        self.exchange_name, self.dlx_name = f"{prefix}shop.mail", f"{prefix}shop.mail.dlx"
        self.broadcast_name = f"{prefix}shop.broadcast"
        self.queue_name, self.bounced_name = f"{prefix}mailer", f"{prefix}mail.bounced"

    async def declare(self, channel):
        """Declare everything (idempotent); returns (mail exchange, broadcast exchange)."""
        exchange = await channel.declare_exchange(self.exchange_name, "topic", durable=True)
        dlx = await channel.declare_exchange(self.dlx_name, "fanout", durable=True)
        broadcast = await channel.declare_exchange(self.broadcast_name, "fanout", durable=True)
        queue = await channel.declare_queue(self.queue_name, durable=True,
                                            arguments={"x-dead-letter-exchange": self.dlx_name})
        await queue.bind(exchange, "email.*")
        await (await channel.declare_queue(self.bounced_name, durable=True)).bind(dlx)
        return exchange, broadcast


async def declare(url, namespace=""):
    """The mail's topology on its own (a collector started before the shop then taps its
    dead-letter exchange from the first bounce)."""
    connection = await aio_pika.connect(url)
    async with connection:
        await Topology(namespace).declare(await connection.channel())


class RabbitPart(Topology):
    def __init__(self, shop, url):
        super().__init__(shop.config.namespace)
        self.shop = shop
        self.url = url
        self.connections = []
        self.counts = Counter()
        self.subscription = None

    async def _connect(self, name):
        connection = await aio_pika.connect_robust(self.url, client_properties={"connection_name": name})
        self.connections.append(connection)
        return connection

    async def start(self):
        admin = await (await self._connect("shop-admin")).channel(publisher_confirms=True)
        self.exchange, self.broadcast = await self.declare(admin)
        for _ in range(MAILERS):
            channel = await (await self._connect("mailer-amqp")).channel()
            await channel.set_qos(prefetch_count=20)
            await (await channel.get_queue(self.queue_name)).consume(self._mail)
        for _ in range(AUDITORS):
            channel = await (await self._connect("audit")).channel()
            own = await channel.declare_queue("", exclusive=True)
            await own.bind(self.broadcast_name)
            await own.consume(self._audit)
        # The relay: every email request the NATS notification service publishes.
        subject = self.shop.names.actual("email.requested")
        self.subscription = await self.shop.nc.subscribe(subject, cb=self._relay)
        log.info("mail relayed over RabbitMQ: exchange %s, queue %s, dead letters to %s",
                 self.exchange_name, self.queue_name, self.bounced_name)

    async def _relay(self, msg):
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.lower().startswith("nats-")}
        message_id = (msg.headers or {}).get("Nats-Msg-Id") or hashlib.blake2b(msg.data, digest_size=8).hexdigest()
        message = aio_pika.Message(msg.data, headers=headers, message_id=message_id, app_id="notification",
                                   content_type="application/json", timestamp=datetime.now(UTC),
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await self.exchange.publish(message, "email.requested")
            await self.broadcast.publish(aio_pika.Message(msg.data, headers=headers, app_id="notification"), "")
            self.counts["relayed"] += 1
        except Exception as error:  # noqa: BLE001 - the demo goes on; the count says so
            self.counts["relay_errors"] += 1
            log.warning("mail not relayed to RabbitMQ: %s", error)

    async def _mail(self, message):
        bounce = int.from_bytes(hashlib.blake2b(message.body, digest_size=2).digest(), "big") / 65536
        if bounce < self.shop.config.fail_fraction:
            self.counts["bounced"] += 1
            await message.reject(requeue=False)  # through the dead-letter exchange
        else:
            self.counts["sent"] += 1
            await message.ack()

    async def _audit(self, message):
        self.counts["audited"] += 1
        await message.ack()

    async def close(self):
        if self.subscription is not None:
            try:
                await self.subscription.unsubscribe()
            except Exception:  # noqa: BLE001, S110 - the NATS connection closed first
                pass
        await asyncio.sleep(0.2)  # the last relayed mail reaches the mailers
        for connection in self.connections:
            await connection.close()
        log.info("RabbitMQ mail: %s", dict(self.counts))
