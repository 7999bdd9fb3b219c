"""A large span body is decoded beside the collector's event loop, not on it: the loop
that reads and acks the broker's messages keeps going while a 16 MB body decodes."""
import asyncio
import os
import threading
import time
import uuid

import nats
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from collector.traces.otlp import decode_otlp_protobuf
from tests.traces.test_traces_ingest import HOST, SpanCollector

pytestmark = pytest.mark.slow


@pytest.fixture
def spans_beside_events(transactional_db, settings):
    """The collector, its span receivers on free ports, in a thread of the test process."""
    for name in ("JAEGER_AGENT_PORT", "JAEGER_BINARY_PORT", "JAEGER_HTTP_PORT", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT"):
        setattr(settings, name, 0)
    settings.EVENTSCOPE_SPANS_HOST = HOST
    running = SpanCollector()
    yield running
    running.stop()


def big_otlp_body(limit=15 * 1024 * 1024):
    """An OTLP/protobuf export of about 15 MB: a few thousand spans with many attributes,
    so decoding (not storing) is most of the work."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="bulk"))
    scope = resource.scope_spans.add()
    start = time.time_ns()
    n = 0
    while request.ByteSize() < limit - 200_000:
        for _ in range(100):
            n += 1
            span = scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"step {n % 20}", kind=1,
                                   start_time_unix_nano=start + n, end_time_unix_nano=start + n + 1_000_000)
            for k in range(100):
                span.attributes.add(key=f"field.{k}", value=common_pb2.AnyValue(string_value=f"value {k} of {n}"))
    return request.SerializeToString()


class AckWatch:
    """Publishes a JetStream message every 50 ms and notes when the collector's observer
    acked each one (its ack floor passing the message's sequence)."""

    def __init__(self, url, stream, subject):
        self.url, self.stream, self.subject = url, stream, subject
        self.published = {}  # seq -> monotonic time
        self.acked = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self):
        nc = await nats.connect(self.url)
        js = nc.jetstream()

        async def publish():
            n = 0
            while not self.done.is_set():
                ack = await js.publish(self.subject, b'{"n": %d}' % n)
                self.published[ack.seq] = time.monotonic()
                n += 1
                await asyncio.sleep(0.05)

        async def watch():
            while not self.done.is_set() or len(self.acked) < len(self.published):
                info = await nc.jsm().consumer_info(self.stream, "eventscope")
                now = time.monotonic()
                for seq in self.published:
                    if seq <= info.ack_floor.stream_seq and seq not in self.acked:
                        self.acked[seq] = now
                await asyncio.sleep(0.02)
                if self.done.is_set() and time.monotonic() - self.stopped > 60:
                    break

        publisher = asyncio.create_task(publish())
        await watch()
        await publisher
        await nc.close()

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped = time.monotonic()
        self.done.set()
        self.thread.join(90)


def test_event_acks_keep_flowing_while_a_16_mb_otlp_body_decodes(spans_beside_events, nats_url):
    span_collector = spans_beside_events
    stream = f"ACK{uuid.uuid4().hex[:8]}"
    subject = f"{stream.lower()}.tick"

    async def create():
        nc = await nats.connect(nats_url)
        await nc.jetstream().add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        await nc.close()

    asyncio.run(create())
    span_collector.wait_until_observing(stream)
    body = big_otlp_body()
    started = time.monotonic()
    assert len(decode_otlp_protobuf(body).spans) > 1000
    decoding = time.monotonic() - started  # what the receiver does with it, timed here
    watch = AckWatch(nats_url, stream, subject)
    watch.start()
    time.sleep(1)
    posted = time.monotonic()
    answer = requests.post(span_collector.otlp_http, data=body, timeout=300,
                           headers={"Content-Type": "application/x-protobuf"})
    answered = time.monotonic()
    time.sleep(0.5)
    watch.stop()
    assert answer.status_code == 200, answer.text
    during = [seq for seq, at in watch.published.items() if posted <= at <= answered]
    assert len(during) >= 10, "too few messages published while the body was handled"
    assert all(seq in watch.acked for seq in during), "a message published meanwhile was never acked"
    waits = [watch.acked[seq] - watch.published[seq] for seq in during]
    took = answered - posted
    print(f"\n{len(body) / 2**20:.1f} MB body: decoded in {decoding:.1f} s, handled in {took:.1f} s; "
          f"{len(during)} events published meanwhile, acked after {max(waits):.2f} s at most")
    # The ack latency of this machine, as it is now: the events published before the body.
    before = [seq for seq, at in watch.published.items() if at < posted and seq in watch.acked]
    assert before, "no event was acked before the body was posted"
    usual = max(watch.acked[seq] - watch.published[seq] for seq in before)
    # Decoded on the loop, an event published meanwhile waits for the whole decode on top.
    assert max(waits) < usual + decoding / 2, (
        f"an event waited {max(waits):.1f} s for its ack (usually {usual:.2f} s; the decode takes {decoding:.1f} s)")
