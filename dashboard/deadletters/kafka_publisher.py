"""Republishing dead letters to Kafka (for the Celery tasks in `tasks.py` only).

A retry goes to the original topic with the original key, so the default partitioner puts
it in the same partition as the message that died, with the dead message's own headers (the
dead-letter topic's error headers taken off) and the provenance headers Eventscope-Retry-Of
and Eventscope-Attempt. It is sent with acks=all and counts as sent once the broker says
where it stored it.

Kafka has no deduplication key across producers, so an attempt that may already have been
sent (its worker died after sending, or no acknowledgement came) is never just sent again:
it is looked for, by its provenance headers, in what the collector's tap stored since it was
first sent. Found: nothing is sent. Not found: the outcome is unknown (the tap may not
have stored it yet, or it may never have been sent), for an operator to decide.
"""
import asyncio
from datetime import timedelta

from collector.brokers.kafka import as_bytes, bootstrap_of, client_options, position, record_headers
from collector.deadletters.kafka import is_error_header
from collector.deadletters.rules import RETRY_ATTEMPT, RETRY_OF

CLOCK_SKEW = timedelta(seconds=60)
NOT_FOUND = ("it was not found in what the collector stored from {topic} since it was first sent; Kafka cannot "
             "deduplicate, so it is not sent again")


def failed(error):
    return ("failed", "", None, error)


def unknown(error):
    return ("unknown", "", None, f"outcome unknown: {error}")


def kafka_headers(headers):
    """The retry's headers: the dead message's, less the dead-letter topic's error headers
    and any dedup key of another broker."""
    kept = {k: v for k, v in (headers or {}).items() if not is_error_header(k) and k.lower() != "nats-msg-id"}
    return record_headers(kept)


class KafkaPublisher:
    """One producer per cluster for the length of a task, on an event loop of its own."""

    def __init__(self, timeout=10.0):
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.producers = {}

    def publish(self, url, messages):
        """First sends of [(topic, key text, headers, data)]: [(outcome, topic, seq, error)],
        outcome "uncertain" when the message may have been stored without our hearing of it."""
        return self.loop.run_until_complete(self._publish(url, messages))

    def close(self):
        for producer in self.producers.values():
            try:
                self.loop.run_until_complete(asyncio.wait_for(producer.stop(), self.timeout))
            except Exception:  # a producer whose broker is gone
                pass
        self.loop.close()

    async def _producer(self, url):
        from aiokafka import AIOKafkaProducer

        producer = self.producers.get(url)
        if producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(url), client_id="eventscope-retry", acks="all",
                                        request_timeout_ms=int(self.timeout * 1000), **client_options(url))
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
            except BaseException:
                await asyncio.wait_for(producer.stop(), self.timeout)
                raise
            self.producers[url] = producer
        return producer

    async def _publish(self, url, messages):
        try:
            producer = await self._producer(url)
        except Exception as error:  # nothing left this process
            return [failed(f"broker unreachable: {error or type(error).__name__}")] * len(messages)
        pending = []
        for topic, key, headers, data in messages:
            try:
                pending.append(await producer.send(topic, data, key=as_bytes(key), headers=kafka_headers(headers)))
            except Exception as error:  # refused before it was written (unknown topic, too large ...)
                pending.append(error)
        futures = [p for p in pending if isinstance(p, asyncio.Future)]
        if futures:
            await asyncio.wait(futures, timeout=self.timeout * 2)
        return [_outcome(p) for p in pending]


def _outcome(pending):
    if isinstance(pending, Exception):
        return failed(f"not sent: {pending or type(pending).__name__}")
    if not pending.done():
        pending.cancel()
        return ("uncertain", "", None, "no acknowledgement from Kafka in time: it may or may not be stored")
    error = pending.exception()
    if error is not None:
        return ("uncertain", "", None, f"no acknowledgement ({error or type(error).__name__}): it may or may not be stored")
    meta = pending.result()
    return ("sent", meta.topic, position(meta.partition, meta.offset), "")


def look_in_store(broker_id, attempts):
    """For attempts that may already be on the topic: {attempt id: result} from what the tap
    stored (found) or unknown."""
    from django.db import connection

    results = {}
    with connection.cursor() as cursor:
        for attempt in attempts:
            since = attempt["first_sent_at"] - CLOCK_SKEW
            cursor.execute(
                """
                SELECT stream, seq FROM collector_event
                WHERE broker_id = %s AND subject = %s AND ts >= %s
                  AND headers ->> %s = %s AND headers ->> %s = %s
                ORDER BY ts LIMIT 1
                """,
                [broker_id, attempt["subject"], since, RETRY_OF, str(attempt["dead_letter_id"]), RETRY_ATTEMPT,
                 str(attempt["attempt"])],
            )
            found = cursor.fetchone()
            results[attempt["id"]] = ("found", found[0], found[1], "") if found else unknown(
                NOT_FOUND.format(topic=attempt["subject"]))
    return results
