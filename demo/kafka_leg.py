"""The part of the shop that runs over Kafka, when KAFKA_BOOTSTRAP_SERVERS names a cluster.

    payment ─▶ payment.succeeded (NATS, as before)
            └▶ Kafka topic <ns>.payments (key: the customer) ─▶ loyalty (consumer group "loyalty")
                                                               └▶ <ns>.payments.DLT (Spring Kafka's headers)

Loyalty awards points; it commits after each batch, a little behind, so its lag shows, and
every customer's records stay in one partition (keyed), so a busy customer makes a hot
partition. A record it cannot handle (a share of them, picked by order number) goes to the
dead-letter topic the way Spring Kafka's DeadLetterPublishingRecoverer sends it.
"""
import asyncio
import contextlib
import json
import logging
import struct

from demo import telemetry, wire

log = logging.getLogger(__name__)

GROUP = "loyalty"
PARTITIONS = 3
BATCH_PAUSE = 0.5  # seconds loyalty waits between batches: it runs a little behind
REJECT_EVERY = 13  # the order numbers loyalty cannot handle (a multiple of this)


class KafkaLeg:
    def __init__(self, shop, bootstrap):
        self.shop = shop
        self.bootstrap = bootstrap
        self.topic = shop.names.subject("payments")
        self.dlt = f"{self.topic}.DLT"
        self.producer = self.consumer = None
        self.task = None
        self.stats = {"produced": 0, "awarded": 0, "dead": 0}

    async def start(self):
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [NewTopic(name, PARTITIONS, 1) for name in (self.topic, self.dlt) if name not in existing]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(wanted)
        finally:
            await admin.close()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=GROUP,
                                         enable_auto_commit=False, auto_offset_reset="earliest")
        await self.consumer.start()
        self.task = asyncio.create_task(self._loyalty())
        log.info("Kafka leg: payments also on topic %s, consumed by group %s", self.topic, GROUP)

    async def payment(self, event):
        """Payment's copy of a succeeded payment, on Kafka, keyed by the customer."""
        trace = telemetry.inject(False)
        payload, headers = wire.encode(wire.CLOUDEVENTS_BINARY, self.topic, event, trace)
        key = str(event.body.get("customer_id", "")).encode() or None
        await self.producer.send(self.topic, payload, key=key,
                                 headers=[(k, str(v).encode()) for k, v in headers.items() if k != "Nats-Msg-Id"])
        self.stats["produced"] += 1

    async def _loyalty(self):
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000, max_records=50)
            for tp, records in batches.items():
                for record in records:
                    await self._handle(tp, record)
            if batches:
                await self.consumer.commit()
                await asyncio.sleep(BATCH_PAUSE)

    async def _handle(self, tp, record):
        try:
            body = json.loads(record.value or b"{}")
        except ValueError:
            body = {}
        number = (body.get("data") or body).get("number", 0) if isinstance(body, dict) else 0
        if number and number % REJECT_EVERY == 0:
            headers = list(record.headers or ()) + [
                ("kafka_dlt-original-topic", record.topic.encode()),
                ("kafka_dlt-original-partition", struct.pack(">i", record.partition)),
                ("kafka_dlt-original-offset", struct.pack(">q", record.offset)),
                ("kafka_dlt-original-consumer-group", GROUP.encode()),
                ("kafka_dlt-exception-fqcn", b"com.shop.loyalty.UnknownTierException"),
                ("kafka_dlt-exception-message", f"no loyalty tier for order {number}".encode()),
            ]
            await self.producer.send(self.dlt, record.value, key=record.key, headers=headers)
            self.stats["dead"] += 1
        else:
            self.stats["awarded"] += 1

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        log.info("Kafka leg: %(produced)d payments produced, %(awarded)d awarded, %(dead)d to the DLT", self.stats)
