"""Republishing dead letters to JetStream (RabbitMQ ones: `rabbit_publisher`, which
`Publisher` hands amqp URLs to), and finding out whether an attempt that may
already have been sent is on the stream (for the Celery tasks in `tasks.py` only).

`Nats-Msg-Id` makes JetStream drop a second copy only within the stream's
`duplicate_window` (2 min unless the stream says otherwise). An attempt that may already
have been sent (its worker died after publishing, or the publish got no acknowledgement)
is therefore settled by one rule:

- within the window, it is sent again with the same `Nats-Msg-Id`: JetStream keeps one;
- past it, it is looked for on the stream by its provenance headers (Eventscope-Retry-Of
  and Eventscope-Attempt). Found: nothing is sent. Absent from a Limits stream that has
  dropped nothing since: it is sent. Otherwise (an Interest or WorkQueue stream deletes
  a consumed message; a Limits stream may have aged it out) nobody can tell, and the
  outcome is `unknown` for an operator to decide.
"""
import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import nats
from nats.js import api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from collector.brokers.nats import secured_options
from collector.deadletters.rules import RETRY_ATTEMPT, RETRY_OF

# Clocks of PostgreSQL (when a send began) and nats-server (when it was stored) may differ.
CLOCK_SKEW = timedelta(seconds=60)
SCAN_LIMIT = 200_000  # messages on one subject since the send; past that the search gives up
NO_ACK = "no acknowledgement from JetStream in time"


@dataclass
class Message:
    subject: str
    headers: dict
    data: bytes
    retry_of: str = ""
    attempt: str = ""
    since: datetime = None  # when it was first (maybe) sent; None: never sent before
    age: float = 0.0  # seconds since then, by the database's clock

    @property
    def key(self):
        return (self.retry_of, self.attempt)


@dataclass
class StreamFacts:
    name: str
    window: float  # duplicate window, seconds
    retention: str
    per_subject_limit: int
    first_seq: int
    first_ts: datetime

    def within_window(self, age):
        # Keep a margin: the stored copy's window started after the send began, but the
        # resend still has to reach the server.
        return age + min(1.0, self.window / 4) < self.window

    def absence_is_proof(self, since):
        """Whether a message sent after `since` and not found now was never stored."""
        if self.retention != api.RetentionPolicy.LIMITS.value or self.per_subject_limit > 0:
            return False
        return self.first_seq <= 1 or (self.first_ts is not None and self.first_ts <= since)

    def why_unknown(self):
        if self.retention != api.RetentionPolicy.LIMITS.value:
            return (f"stream {self.name} keeps a message only until it is consumed ({self.retention} retention) and "
                    f"its duplicate window ({self.window:g} s) has passed: it may have been delivered and consumed")
        return f"stream {self.name} has dropped messages since it was sent (its limits), so not finding it proves nothing"


def failed(error):
    return ("failed", "", None, error)


def unknown(error):
    return ("unknown", "", None, f"outcome unknown: {error}")


class Publisher:
    """JetStream connections, one per broker, kept for the length of a task on an event
    loop of its own, so a bulk job does not connect once per chunk."""

    def __init__(self, timeout=5.0, ack_timeout=None):
        self.timeout = timeout
        self.ack_timeout = timeout if ack_timeout is None else ack_timeout
        self.loop = asyncio.new_event_loop()
        self.connections = {}
        self.rabbit = None

    def _rabbit(self, url):
        if not url.startswith(("amqp://", "amqps://")):
            return None
        if self.rabbit is None:
            from dashboard.deadletters.rabbit_publisher import RabbitPublisher

            self.rabbit = RabbitPublisher(self.loop, self.timeout)
        return self.rabbit

    def publish(self, url, messages):
        """First sends: [(outcome, stream, seq, error)], outcome "uncertain" when the message
        may have been stored without our hearing of it."""
        rabbit = self._rabbit(url)
        if rabbit is not None:
            return self.loop.run_until_complete(rabbit.first_sends(url, messages))
        return self.loop.run_until_complete(self._first_sends(url, messages))

    def settle(self, url, messages):
        """Messages that may already be on the stream, by the rule above. Never "uncertain"."""
        rabbit = self._rabbit(url)
        if rabbit is not None:
            return self.loop.run_until_complete(rabbit.settle(url, messages))
        return self.loop.run_until_complete(self._settle(url, messages))

    def close(self):
        if self.rabbit is not None:
            self.loop.run_until_complete(self.rabbit.close())
        for nc in self.connections.values():
            try:
                self.loop.run_until_complete(nc.close())
            except Exception:  # closing a dead connection
                pass
        self.loop.close()

    async def _connect(self, url):
        nc = self.connections.get(url)
        if nc is None or not nc.is_connected:
            # nats-py retries a refused first connect forever when max_reconnect_attempts is 0:
            # 1 means two tries, and the overall timeout bounds it whatever the client does.
            nc = await asyncio.wait_for(nats.connect(
                url.split(","), connect_timeout=self.timeout, max_reconnect_attempts=1, reconnect_time_wait=0.5,
                allow_reconnect=False, error_cb=_quiet, **secured_options(url)), 2 * self.timeout)
            self.connections[url] = nc
        return nc

    async def _first_sends(self, url, messages):
        try:
            nc = await self._connect(url)
        except Exception as error:  # nothing left this process: every message stays unsent
            return [failed(f"broker unreachable: {error or type(error).__name__}")] * len(messages)
        return await self._send(nc.jetstream(timeout=self.timeout), messages)

    async def _send(self, js, messages):
        """Publish through JetStream only (a retry must be deduplicated, which core NATS
        cannot do), pipelined."""
        pending = []
        for message in messages:
            try:
                pending.append(await js.publish_async(message.subject, message.data, headers=message.headers))
            except Exception as error:  # the connection went away before it was written: not sent
                pending.append(error)
        futures = [p for p in pending if isinstance(p, asyncio.Future)]
        if futures:
            await asyncio.wait(futures, timeout=self.ack_timeout)
        return [_outcome(p, message.subject) for p, message in zip(pending, messages)]

    async def _settle(self, url, messages):
        try:
            nc = await self._connect(url)
        except Exception as error:
            return [unknown(f"it could not be checked (broker unreachable: {error or type(error).__name__})")] * len(
                messages)
        js = nc.jetstream(timeout=self.timeout)
        results = [None] * len(messages)
        streams, resend, look = {}, [], {}
        for index, message in enumerate(messages):
            try:
                if message.subject not in streams:
                    streams[message.subject] = await _stream_facts(nc, js, message.subject, self.timeout)
                facts = streams[message.subject]
            except NotFoundError:
                results[index] = failed(f"no stream captures {message.subject} any more: nothing was sent")
                continue
            except Exception as error:
                results[index] = unknown(f"the stream could not be read ({error or type(error).__name__})")
                continue
            if facts.within_window(message.age):
                resend.append(index)
            else:
                look.setdefault((facts.name, message.subject), []).append(index)
        for (stream, subject), indexes in look.items():
            facts = streams[subject]
            since = min(messages[i].since for i in indexes) - CLOCK_SKEW
            wanted = {messages[i].key for i in indexes}
            try:
                if facts.retention == api.RetentionPolicy.WORK_QUEUE.value:
                    found = await _search_work_queue(js, stream, subject, facts.first_seq, wanted)
                else:
                    found = await _search(js, stream, subject, since, wanted, self.timeout)
            except Exception as error:
                found, reason = None, f"stream {stream} could not be searched ({error or type(error).__name__})"
            else:
                reason = f"stream {stream} holds too many messages on {subject} since it was sent to search them"
            for index in indexes:
                message = messages[index]
                if found is None:
                    results[index] = unknown(reason)
                elif message.key in found:
                    results[index] = ("found", stream, found[message.key], "")
                elif facts.absence_is_proof(message.since - CLOCK_SKEW):
                    resend.append(index)
                else:
                    results[index] = unknown(facts.why_unknown())
        if resend:
            sent = await self._send(js, [messages[i] for i in resend])
            for index, result in zip(resend, sent):
                outcome, _, _, error = result
                if outcome == "uncertain" or (outcome == "failed" and "no stream captures" not in error):
                    # An earlier copy may be stored: a failed resend proves nothing about it.
                    result = unknown(f"sent again with the same Nats-Msg-Id, but {error}")
                results[index] = result
        return results


async def _stream_facts(nc, js, subject, timeout):
    name = await js.find_stream_name_by_subject(subject)
    reply = await nc.request(f"{js._prefix}.STREAM.INFO.{name}", b"", timeout=timeout)
    info = json.loads(reply.data)
    if "error" in info:
        raise APIError.from_error(info["error"])
    config, state = info["config"], info["state"]
    return StreamFacts(name=name, window=config.get("duplicate_window", 0) / 1e9,
                       retention=config.get("retention", "limits"),
                       per_subject_limit=config.get("max_msgs_per_subject", -1) or -1,
                       first_seq=state.get("first_seq", 0),
                       first_ts=_timestamp(state.get("first_ts")) if state.get("messages") else None)


def _timestamp(text):
    if not text:
        return None
    # nats-server writes nanoseconds; Python reads at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


async def _search(js, stream, subject, since, wanted, timeout):
    """{(retry of, attempt): stream sequence} of the `wanted` provenance found on `subject`
    since `since`, reading headers only; None when there is too much to read."""
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=since, ack_policy=api.AckPolicy.NONE,
        headers_only=True, inactive_threshold=30.0, mem_storage=True)
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    found = {}
    try:
        remaining = (await sub.consumer_info()).num_pending
        if remaining > SCAN_LIMIT:
            return None
        read = 0
        while remaining > 0 and read <= SCAN_LIMIT:
            for msg in await sub.fetch(min(remaining, 500), timeout=timeout):
                headers = msg.headers or {}
                key = (headers.get(RETRY_OF), headers.get(RETRY_ATTEMPT))
                if key in wanted:
                    found[key] = msg.metadata.sequence.stream
                remaining = msg.metadata.num_pending
                read += 1
        return found if read <= SCAN_LIMIT else None
    finally:
        try:
            await sub.unsubscribe()
            await js.delete_consumer(stream, sub._consumer)
        except Exception:  # it expires by itself (inactive_threshold)
            pass


async def _search_work_queue(js, stream, subject, first_seq, wanted):
    """`_search` on a WorkQueue stream, which allows no second consumer on its subjects: walk
    the (unconsumed, so few) messages on `subject` by sequence."""
    found = {}
    seq = max(first_seq, 1)
    for _ in range(SCAN_LIMIT):
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        headers = msg.headers or {}
        key = (headers.get(RETRY_OF), headers.get(RETRY_ATTEMPT))
        if key in wanted:
            found[key] = msg.seq
        seq = msg.seq + 1
    return None


async def _quiet(error):
    pass  # connection errors are reported with the outcome of each message


def _outcome(pending, subject):
    """One publish's outcome. Only what proves the message was not stored is `failed`: not
    written at all, no stream, or refused by JetStream. Everything else after the write
    (no acknowledgement in time, the connection lost meanwhile) is `uncertain`."""
    if isinstance(pending, Exception):
        return failed(f"not sent: {pending or type(pending).__name__}")
    if not pending.done():
        pending.cancel()
        return ("uncertain", "", None, f"{NO_ACK}: it may or may not be stored")
    error = pending.exception()
    if isinstance(error, NoStreamResponseError):
        return failed(f"no stream captures {subject} any more: nothing was sent")
    if isinstance(error, APIError):
        return failed(f"refused by JetStream: {error.description or error}")
    if error is not None:
        return ("uncertain", "", None, f"no acknowledgement ({error or type(error).__name__}): it may or may not be stored")
    ack = pending.result()
    return ("duplicate" if ack.duplicate else "sent", ack.stream, ack.seq, "")
