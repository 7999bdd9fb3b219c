"""The Jaeger agent's socket drain: a burst of full datagrams, several times the kernel's
receive buffer, is kept whole while the collector decodes; what the drain's bounded queue
cannot hold is counted, and kept + dropped is every datagram sent."""
import asyncio
import socket
import time

import pytest
from thriftpy2.protocol import TCompactProtocolFactory
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

from collector.traces.agent import start_jaeger_agent
from collector.traces.jaeger import agent_thrift, jaeger_thrift
from tests.traces.test_span_receivers import HOST, loop, run  # noqa: F401 - the loop fixture

SPANS_PER_DATAGRAM = 150


def compact_datagram(first_span_id):
    """A compact emitBatch near the exporter's 65,000-byte limit, as a busy service sends."""
    tags = [jaeger_thrift.Tag(key=f"attribute.{i}", vType=0, vStr="x" * 24) for i in range(8)]
    spans = [
        jaeger_thrift.Span(traceIdHigh=0, traceIdLow=first_span_id, spanId=first_span_id + i, parentSpanId=0,
                           operationName="GET /orders/{id}", flags=1, startTime=1_700_000_000_000_000 + i,
                           duration=250, tags=tags)
        for i in range(SPANS_PER_DATAGRAM)
    ]
    batch = jaeger_thrift.Batch(process=jaeger_thrift.Process(serviceName="orders"), spans=spans)
    buffer = TMemoryBuffer()
    protocol = TCompactProtocolFactory().get_protocol(buffer)
    protocol.write_message_begin("emitBatch", TMessageType.ONEWAY, 0)
    agent_thrift.Agent.emitBatch_args(batch=batch).write(protocol)
    protocol.write_message_end()
    data = buffer.getvalue()
    assert 40_000 < len(data) < 65_000, len(data)
    return data


class GatedSink:
    """Counts spans; while the gate is shut it holds each delivery, like a database that is slow."""

    def __init__(self, open_gate=True):
        self.spans = 0
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()

    async def __call__(self, spans):
        await self.gate.wait()
        self.spans += len(spans)


def send(port, datagrams, pause_every=25):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        for n, data in enumerate(datagrams):
            udp.sendto(data, (HOST, port))
            if n % pause_every == 0:
                time.sleep(0.002)


def wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.fixture
def agent(loop):  # noqa: F811
    started = []

    def start(sink, **options):
        receiver = run(loop, start_jaeger_agent(HOST, 0, sink, protocol="compact", **options))
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        run(loop, receiver.wait_closed(), timeout=60)


def test_a_burst_of_many_times_the_kernels_receive_buffer_is_kept_whole(agent):
    """250 datagrams (~13 MB; the kernel buffer holds 4 MiB of data, 8 MiB with its
    bookkeeping) sent in well under a second,
    while decoding them takes seconds: every span arrives, nothing is dropped anywhere."""
    sink = GatedSink()
    receiver = agent(sink)
    datagrams = [compact_datagram(1 + n * 1000) for n in range(250)]
    send(receiver.port, datagrams)
    expected = len(datagrams) * SPANS_PER_DATAGRAM
    assert wait_until(lambda: sink.spans >= expected), (sink.spans, receiver.counters)
    receiver.refresh()
    counters = receiver.counters
    assert (counters.payloads, counters.dropped, counters.dropped_by_kernel, counters.bad_payloads) == (250, 0, 0, 0)


def test_what_the_drains_queue_cannot_hold_is_counted_and_the_rest_arrives(loop, agent):  # noqa: F811
    """With the sink held and a queue of 3 datagrams, a burst overflows the queue: the
    drops are counted, and kept + dropped is every datagram sent."""
    sink = GatedSink(open_gate=False)
    receiver = agent(sink, queue_size=3)
    sent = 80
    send(receiver.port, [compact_datagram(1 + n * 1000) for n in range(sent)])
    time.sleep(1)
    loop.call_soon_threadsafe(sink.gate.set)
    assert wait_until(lambda: receiver.counters.payloads == sent and
                      sink.spans == (sent - receiver.counters.dropped) * SPANS_PER_DATAGRAM), (sink.spans, receiver.counters)
    assert receiver.counters.dropped > 0
    assert receiver.counters.spans == sink.spans


@pytest.mark.django_db
def test_the_overview_shows_each_collectors_dropped_span_datagrams(admin_client_):
    """What the heartbeat reports of the span receivers (dropped by the drain's queue and by
    the kernel) shows in the overview's collector table, and is marked as an error."""
    from django.utils import timezone

    from collector.models import CollectorHeartbeat

    now = timezone.now()
    CollectorHeartbeat.objects.create(name="spans-host:1", started=now, beat=now,
                                      counters={"spans": {"dropped": 3, "dropped_by_kernel": 4}})
    page = admin_client_.get("/").content.decode()
    assert '<td class="num error" title="3 by the receive queue, 4 by the kernel">7</td>' in page
