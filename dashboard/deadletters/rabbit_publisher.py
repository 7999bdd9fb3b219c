"""Republishing RabbitMQ dead letters (for `publisher.Publisher`, which hands amqp URLs here).

A retry goes to the original exchange and routing key (the letter's first death), with its
message id (`eventscope-retry-<letter>-<attempt>`, from the claim) and the provenance
headers, with publisher confirms. RabbitMQ has no broker-side deduplication: the database
claim is what makes it one message per click. An attempt that may already have been sent
(its worker died after publishing, or no confirm came) is settled by looking for its
message id among what the tap stored (the tap keys a message with an id by exchange and
id, see collector/brokers/rabbitmq.py): found, nothing is sent; not found, nobody can tell
(the collector may not have stored it yet, or the tap's bound may have dropped it), and
the outcome is "unknown" for an operator to decide — never a second copy.
"""
import asyncio
from datetime import timedelta

import aio_pika
from aiormq.exceptions import ChannelNotFoundEntity, DeliveryError

from collector.brokers.rabbitmq import DEFAULT_EXCHANGE, PROPERTIES, message_key

CLOCK_SKEW = timedelta(seconds=60)
# Headers of the stored copy that are RabbitMQ's own or the tap's, never sent back.
DROPPED = ("x-death", "x-first-death-", "x-last-death-", "amqp-")


def failed(error):
    return ("failed", "", None, error)


def unknown(error):
    return ("unknown", "", None, f"outcome unknown: {error}")


def target(message):
    """(exchange, routing key, AMQP headers, properties) of a retry from its stored headers."""
    headers = dict(message.headers or {})
    exchange = headers.get("x-first-death-exchange", headers.get("amqp-exchange", ""))
    if exchange == DEFAULT_EXCHANGE:
        exchange = ""
    properties = {}
    for name in PROPERTIES:
        value = headers.get("amqp-" + name.replace("_", "-"))
        if value and name in ("content_type", "content_encoding", "correlation_id", "type", "app_id"):
            properties[name] = value
    properties["message_id"] = headers.pop("Nats-Msg-Id", "") or message.retry_of
    kept = {k: v for k, v in headers.items() if not k.lower().startswith(DROPPED)}
    return exchange, message.subject, kept, properties


class RabbitPublisher:
    def __init__(self, loop, timeout=5.0):
        self.loop = loop
        self.timeout = timeout
        self.connections = {}

    async def _channel(self, url):
        connection = self.connections.get(url)
        if connection is None or connection.is_closed:
            connection = await asyncio.wait_for(aio_pika.connect(url, timeout=self.timeout), 2 * self.timeout)
            self.connections[url] = connection
        return await connection.channel(publisher_confirms=True)

    async def first_sends(self, url, messages):
        try:
            channel = await self._channel(url)
        except Exception as error:  # noqa: BLE001 - nothing left this process: every message stays unsent
            return [failed(f"broker unreachable: {error or type(error).__name__}")] * len(messages)
        try:
            return [await self._send(channel, message) for message in messages]
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _send(self, channel, message):
        exchange, key, headers, properties = target(message)
        try:
            destination = channel.default_exchange if not exchange else await channel.get_exchange(exchange)
        except ChannelNotFoundEntity:
            return failed(f"exchange {exchange} no longer exists: nothing was sent")
        except Exception as error:  # noqa: BLE001 - before any publish: not sent
            return failed(f"not sent: {error or type(error).__name__}")
        try:
            await asyncio.wait_for(destination.publish(aio_pika.Message(message.data, headers=headers or None,
                                                                        **properties), key), self.timeout)
        except DeliveryError as error:
            return failed(f"refused by RabbitMQ (nack): {error}")
        except Exception as error:  # noqa: BLE001 - written, maybe routed: no confirm
            why = f"no confirm from RabbitMQ ({error or type(error).__name__}): it may or may not have been published"
            return ("uncertain", "", None, why)
        return ("sent", exchange or DEFAULT_EXCHANGE, None, "")

    async def settle(self, url, messages):
        from channels.db import database_sync_to_async

        results = []
        for message in messages:
            exchange, _, _, properties = target(message)
            stream = exchange or DEFAULT_EXCHANGE
            try:
                found = await database_sync_to_async(_stored)(url, stream, properties["message_id"], message.since)
            except Exception as error:  # noqa: BLE001 - the store could not be asked
                results.append(unknown(f"the stored messages could not be searched ({error})"))
                continue
            if found:
                results.append(("found", stream, None, ""))
            else:
                results.append(unknown(f"message id {properties['message_id']} is not (yet) among what the "
                                       f"collector stored from {stream}; RabbitMQ cannot be asked whether it "
                                       f"was published"))
        return results

    async def close(self):
        for connection in self.connections.values():
            try:
                await connection.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass


def _stored(url, exchange, message_id, since):
    """Whether the tap stored a message with this id on `exchange` since `since`."""
    from collector.models import Broker, Event

    seq = message_key(exchange, "", {}, b"", message_id)
    found = Event.objects.filter(broker__in=Broker.objects.filter(url=url), stream=exchange, seq=seq)
    if since is not None:
        found = found.filter(ts__gte=since - CLOCK_SKEW)
    return found.exists()
