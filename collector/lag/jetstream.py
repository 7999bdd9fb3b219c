"""Everything the lag sampler knows about JetStream: the stream and consumer list APIs
(paged with `offset`, so 10,000 consumers are a few dozen requests), and a direct get of the
next message on a consumer's filter subjects (the age of its oldest unprocessed message).

Raw JSON requests on the collector's own connection: one request per page of 256, parsed
once, rather than a typed client object per consumer."""
import asyncio
import json

import nats

from collector.brokers.nats import OBSERVER
from collector.lag.reading import ConsumerReading, ReadError, StreamReading, parse_time

KIND = "jetstream"
CONCURRENCY = 16  # streams whose consumer lists are read at the same time


class JetStreamSource:
    kind = KIND

    def __init__(self, nc, observer=OBSERVER, timeout=5.0):
        self.nc = nc
        self.observer = observer
        self.timeout = timeout

    async def _request(self, subject, body):
        try:
            reply = await self.nc.request(subject, json.dumps(body).encode(), timeout=self.timeout)
        except (nats.errors.Error, asyncio.TimeoutError) as error:
            raise ReadError(f"{subject}: {type(error).__name__} {error}".strip()) from None
        try:
            data = json.loads(reply.data)
        except ValueError:
            raise ReadError(f"{subject}: unreadable answer") from None
        if "error" in data:
            error = data["error"]
            raise ReadError(f"{subject}: {error.get('description') or error} (code {error.get('err_code', error.get('code'))})")
        return data

    async def _paged(self, subject, key):
        items, offset = [], 0
        while True:
            data = await self._request(subject, {"offset": offset})
            page = data.get(key) or []
            items.extend(page)
            offset += len(page)
            if not page or offset >= data.get("total", 0):
                return items

    async def streams(self):
        """Every stream with its state."""
        return [stream_reading(info) for info in await self._paged("$JS.API.STREAM.LIST", "streams")]

    async def consumers(self, stream):
        """Every consumer of `stream`, as the broker reports it now."""
        infos = await self._paged(f"$JS.API.CONSUMER.LIST.{stream}", "consumers")
        return [consumer_reading(info, self.observer) for info in infos]

    async def all_consumers(self, names):
        """{stream: [ConsumerReading] or ReadError} for the streams named, read side by side."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(name):
            async with gate:
                try:
                    return name, await self.consumers(name)
                except ReadError as error:
                    return name, error

        return dict(await asyncio.gather(*(one(name) for name in names)))

    async def next_message(self, stream, after_seq, subjects):
        """(seq, time) of the first message after `after_seq` on any of `subjects` (every
        subject when empty), or None when the stream has none."""
        found = None
        for subject in subjects or [">"]:
            try:
                data = await self._request(f"$JS.API.STREAM.MSG.GET.{stream}",
                                           {"seq": after_seq + 1, "next_by_subj": subject})
            except ReadError as error:
                if "no message found" in str(error).lower() or "10037" in str(error):
                    continue
                raise
            message = data.get("message") or {}
            seq, when = int(message.get("seq", 0)), parse_time(message.get("time"))
            if seq and when and (found is None or seq < found[0]):
                found = (seq, when)
        return found


def stream_reading(info):
    config, state = info.get("config") or {}, info.get("state") or {}
    limited = any([
        (config.get("max_msgs") or -1) > 0, (config.get("max_bytes") or -1) > 0, (config.get("max_age") or 0) > 0,
        (config.get("max_msgs_per_subject") or -1) > 0,
    ])
    return StreamReading(
        name=config.get("name", ""), first_seq=int(state.get("first_seq") or 0), last_seq=int(state.get("last_seq") or 0),
        messages=int(state.get("messages") or 0), retention=config.get("retention") or "limits", limited=limited,
        subjects=list(config.get("subjects") or []),
    )


def consumer_reading(info, observer=OBSERVER):
    config = info.get("config") or {}
    delivered, floor = info.get("delivered") or {}, info.get("ack_floor") or {}
    filters = list(config.get("filter_subjects") or ([config["filter_subject"]] if config.get("filter_subject") else []))
    name = info.get("name") or config.get("durable_name") or config.get("name") or ""
    return ConsumerReading(
        stream=info.get("stream_name", ""),
        name=name,
        created=parse_time(info.get("created")),
        config={
            "durable": config.get("durable_name") or "",
            "ack_policy": config.get("ack_policy") or "none",
            "max_deliver": config.get("max_deliver", -1),
            "ack_wait_seconds": (config.get("ack_wait") or 0) / 1e9,
            "filter_subjects": filters,
            "deliver_group": config.get("deliver_group") or "",
            "deliver_subject": config.get("deliver_subject") or "",
            "pull": not config.get("deliver_subject"),
            "deliver_policy": config.get("deliver_policy") or "all",
            "opt_start_seq": config.get("opt_start_seq"),
            "opt_start_time": config.get("opt_start_time"),
            "max_ack_pending": config.get("max_ack_pending"),
            "description": config.get("description") or "",
        },
        pending=int(info.get("num_pending") or 0),
        ack_pending=int(info.get("num_ack_pending") or 0),
        redelivered=int(info.get("num_redelivered") or 0),
        waiting=int(info.get("num_waiting") or 0),
        delivered_seq=int(delivered.get("stream_seq") or 0),
        delivered_consumer_seq=int(delivered.get("consumer_seq") or 0),
        ack_floor_seq=int(floor.get("stream_seq") or 0),
        ack_floor_consumer_seq=int(floor.get("consumer_seq") or 0),
        last_active=parse_time(floor.get("last_active")),
        delivered_active=parse_time(delivered.get("last_active")),
        observer=name == observer,
    )
