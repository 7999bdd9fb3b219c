"""Span receivers: Jaeger agent (UDP), Jaeger collector HTTP, OTLP/HTTP and OTLP/gRPC.

Each ``start_*`` coroutine binds, starts serving, and returns a ``Receiver``.
Decoded spans go to ``sink(spans)``, an async callable; if it raises (the store
is down), HTTP answers 503 and gRPC UNAVAILABLE so exporters retry later. UDP
cannot ask for a retry: those spans are counted as lost.

With a ``token`` (SPAN_RECEIVER_TOKEN) each TCP receiver checks it the way the real
exporters can send it: OTLP/HTTP as ``Authorization: Bearer <token>`` and OTLP/gRPC as
``authorization: Bearer <token>`` metadata (the OTLP exporters' ``headers`` option), Jaeger
HTTP as HTTP Basic with the token as the password (the Jaeger exporter's ``username`` and
``password``, the only credentials it sends). A missing or wrong one gets 401 or
UNAUTHENTICATED and is counted. UDP datagrams carry no credentials at all.

HTTP bodies and gRPC requests (up to 16 MB, tens of seconds of decoding on a busy
machine) are decoded in threads of the receiver, not on the event loop, which also
reads and acks the broker's messages. The decoders hold the GIL most of the time, but
the interpreter hands it to the loop every few milliseconds; only protobuf's own parse
of a body holds it in one go (a fraction of a second for 16 MB). Agent datagrams
(64 KB at most) are read by a process of their own that only drains the socket
(`collector.traces.udpdrain`) and decoded in a thread here.
"""
import asyncio
import base64
import binascii
import hmac
import logging
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

from collector.traces import udpdrain
from collector.traces.jaeger import decode_jaeger_agent, decode_jaeger_batch
from collector.traces.model import SpanDecodeError
from collector.traces.otlp import (
    decode_otlp_json,
    decode_otlp_protobuf,
    decode_otlp_request,
)

log = logging.getLogger("collector.spans.receivers")

MAX_BODY = 16 * 1024 * 1024
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
UDP_QUEUE_BYTES = 64 * 1024 * 1024  # a burst of ~1,000 full agent datagrams waits here to be decoded
_THRIFT_TYPES = frozenset({"application/x-thrift", "application/vnd.apache.thrift.binary"})
_RETRY_LATER = "spans could not be stored; retry later"
DECODE_THREADS = 2  # bodies of one receiver decoded at once; more wait their turn


def _decode_threads(name):
    return ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix=f"decode {name}")


async def _off_the_loop(threads, decode, *args):
    return await asyncio.get_running_loop().run_in_executor(threads, decode, *args)


@dataclass
class Counters:
    payloads: int = 0  # datagrams or requests received
    spans: int = 0  # spans handed to the sink
    rejected_spans: int = 0  # spans left out of a payload that was otherwise fine
    bad_payloads: int = 0  # undecodable, too large or of the wrong content type
    sink_failures: int = 0  # payloads whose spans the sink did not take
    dropped: int = 0  # datagrams dropped because the decode queue was full
    dropped_by_kernel: int = 0  # datagrams the kernel dropped: the socket's receive buffer was full
    unauthorized: int = 0  # requests refused for a missing or wrong token


class TokenCheck:
    """SPAN_RECEIVER_TOKEN as the exporters send it; without a token every request passes."""

    def __init__(self, token=None):
        self.token = token.encode() if token else None

    def _same(self, given):
        # Constant time: the answer must not tell how much of a guess was right.
        return hmac.compare_digest(given.encode(), self.token)

    def bearer(self, header):
        """`Authorization: Bearer <token>` (OTLP/HTTP header, OTLP/gRPC metadata)."""
        if self.token is None:
            return True
        scheme, _, value = (header or "").strip().partition(" ")
        return scheme.lower() == "bearer" and self._same(value.strip())

    def basic(self, header):
        """HTTP Basic with the token as the password, whatever the user name (Jaeger HTTP)."""
        if self.token is None:
            return True
        scheme, _, value = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _user, colon, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(colon) and self._same(password)


COUNTER_FIELDS = tuple(f.name for f in fields(Counters))
_UNAUTHORIZED = "missing or wrong span receiver token (SPAN_RECEIVER_TOKEN)"


class Receiver:
    """A running receiver: the port it is bound to, its counters, and how to stop it."""

    def __init__(self, name, port, counters, stop):
        self.name = name
        self.port = port
        self.counters = counters
        self._stop = stop
        self._stopping = None

    def refresh(self):
        """Bring counters kept outside the receiver up to date (before they are read)."""

    def close(self):
        """Start stopping; call it on the receiver's event loop."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())

    async def wait_closed(self):
        self.close()
        await self._stopping

    def __repr__(self):
        return f"<Receiver {self.name} on port {self.port}>"


async def _deliver(name, result, sink, counters):
    """Hand decoded spans to the sink; the sink's exception propagates after counting."""
    if result.rejected:
        counters.rejected_spans += len(result.rejected)
        log.warning("%s: %d spans rejected, first: %s", name, len(result.rejected), result.rejected[0])
    if not result.spans:
        return
    try:
        await sink(result.spans)
    except Exception:
        counters.sink_failures += 1
        log.exception("%s: the sink failed on %d spans", name, len(result.spans))
        raise
    counters.spans += len(result.spans)


# Jaeger agent: UDP datagrams -----------------------------------------------------------


class _AgentPort:
    """One agent port of a drain: its socket, protocol and counters."""

    def __init__(self, name, sock, protocol, counters):
        self.name, self.sock, self.protocol, self.counters = name, sock, protocol, counters
        self.inode = os.fstat(sock.fileno()).st_ino
        self.base = (0, 0)  # counts of drain processes that ended before the current one
        self.seen = (0, 0)  # the current drain process's counts, as last reported
        self.closed = False

    def refresh(self):
        """Datagrams the kernel dropped before the drain read them (its receive buffer was full)."""
        self.counters.dropped_by_kernel = kernel_drops(self.inode)


class _AgentDrain:
    """The agent ports' sockets, the one process that drains them (see
    `collector.traces.udpdrain`), and a thread of the collector that decodes what the drain
    passes on and hands the spans to the sink on the event loop."""

    def __init__(self, ports, sink, loop, queue_size, queue_bytes):
        self.ports, self.sink, self.loop = ports, sink, loop
        self.queue_size, self.queue_bytes = queue_size, queue_bytes
        self.stopping = False
        self.process = None
        self.thread = threading.Thread(target=self._run, name="decode Jaeger agent UDP", daemon=True)
        self.stopped = None

    def start(self):
        """The drain process starts with the first datagram: a collector whose exporters
        never use UDP spends no process (~9 MB) on it. Until then the kernel's receive
        buffer holds what arrives (the spawn takes tens of milliseconds)."""
        for port in self.ports:
            self.loop.add_reader(port.sock.fileno(), self._first_datagram)

    def _first_datagram(self):
        for port in self.ports:
            self.loop.remove_reader(port.sock.fileno())
        try:
            self.stream = self._spawn()
        except OSError as error:
            log.error("Jaeger agent UDP: no drain process: %s; datagrams are not read", error)
            return
        self.thread.start()

    def _spawn(self):
        read_fd, write_fd = os.pipe()
        fds = [port.sock.fileno() for port in self.ports]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", udpdrain.__file__, str(write_fd), str(os.getpid()),
                 str(self.queue_size), str(self.queue_bytes), *map(str, fds)],
                pass_fds=(*fds, write_fd), stdin=subprocess.DEVNULL, close_fds=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return os.fdopen(read_fd, "rb", buffering=1024 * 1024)

    def _run(self):
        while True:
            with self.stream:
                while (frame := self._frame()) is not None:
                    index, received, dropped, host, data = frame
                    port = self.ports[index]
                    port.seen = (received, dropped)
                    port.counters.payloads = port.base[0] + received
                    port.counters.dropped = port.base[1] + dropped
                    self._decode_and_deliver(port, host, data)
            if self.stopping:
                return
            # The drain process ended by itself (killed by hand, out of memory): the sockets
            # are still bound here, so a new one takes over.
            log.error("Jaeger agent UDP: the sockets' drain process ended (%s); starting another",
                      self.process.wait())
            for port in self.ports:
                port.base = (port.base[0] + port.seen[0], port.base[1] + port.seen[1])
                port.seen = (0, 0)
            try:
                self.stream = self._spawn()
            except OSError as error:
                log.error("Jaeger agent UDP: no drain process: %s; datagrams are not read", error)
                return

    def _frame(self):
        header = self.stream.read(udpdrain.HEADER.size)
        if len(header) < udpdrain.HEADER.size:
            return None
        index, length, received, dropped, host_length = udpdrain.HEADER.unpack(header)
        host = self.stream.read(host_length).decode()
        data = self.stream.read(length)
        if len(data) < length:
            return None
        return index, received, dropped, host, data

    def _decode_and_deliver(self, port, host, data):
        try:
            result = decode_jaeger_agent(data, port.protocol)
        except SpanDecodeError as exc:
            port.counters.bad_payloads += 1
            log.warning("%s: dropped a datagram of %d bytes from %s: %s", port.name, len(data), host, exc.reason)
            return
        if port.closed:
            return
        delivered = asyncio.run_coroutine_threadsafe(_deliver(port.name, result, self.sink, port.counters), self.loop)
        try:
            # Waiting here holds the pipe back while the sink's queue is full: the drain's
            # bounded queue then fills, and what it cannot hold is counted there.
            delivered.result()
        except Exception:  # noqa: BLE001, S110 - counted and logged by _deliver; UDP cannot ask for a retry
            pass

    async def close(self, port):
        """Close one port's receiver; the last one stops the drain and its thread."""
        port.closed = True
        if not all(p.closed for p in self.ports):
            return
        if self.stopped is None:
            self.stopped = asyncio.ensure_future(self._stop())
        await self.stopped

    async def _stop(self):
        self.stopping = True
        loop = asyncio.get_running_loop()
        for port in self.ports:
            loop.remove_reader(port.sock.fileno())
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            # Frames already in the pipe are still decoded before the thread ends.
            if self.thread.is_alive():
                await loop.run_in_executor(None, self.thread.join)
            await loop.run_in_executor(None, self.process.wait)
        for port in self.ports:
            port.refresh()
            port.sock.close()


def kernel_drops(inode):
    """The `drops` column of /proc/net/udp(6) for the socket with this inode (0 if unknown)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    columns = row.split()
                    if len(columns) > 12 and columns[9] == str(inode):
                        return int(columns[-1])
        except OSError:
            continue
    return 0


async def start_jaeger_agents(host, ports, sink, *, queue_size=10_000, queue_bytes=UDP_QUEUE_BYTES):
    """Jaeger agent UDP on each (port, protocol) of `ports`: ``emitBatch`` datagrams, compact
    (usually 6831) or binary (6832). One receiver per port.

    One process drains every socket into a queue bounded by `queue_size` datagrams and
    `queue_bytes`; a thread here decodes (see `collector.traces.udpdrain`). What the queue
    cannot hold is counted in ``dropped``, what the kernel dropped before the drain read it
    in ``dropped_by_kernel``."""
    loop = asyncio.get_running_loop()
    agent_ports = []
    try:
        for port, protocol in ports:
            if protocol not in ("compact", "binary"):
                raise ValueError(f"protocol must be 'binary' or 'compact', not {protocol!r}")
            family, kind, proto, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[0]
            sock = socket.socket(family, kind, proto)
            agent_ports.append(_AgentPort(f"Jaeger agent UDP ({protocol})", sock, protocol, Counters()))
            sock.bind(address)
            # Bursts arrive faster than one decode; the kernel caps this at net.core.rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        drain = _AgentDrain(agent_ports, sink, loop, queue_size, queue_bytes)
        drain.start()
    except BaseException:
        for agent_port in agent_ports:
            agent_port.sock.close()
        raise
    receivers = []
    for agent_port in agent_ports:
        receiver = Receiver(agent_port.name, agent_port.sock.getsockname()[1], agent_port.counters,
                            lambda p=agent_port: drain.close(p))
        receiver.refresh = agent_port.refresh
        receivers.append(receiver)
    return receivers


async def start_jaeger_agent(host, port, sink, *, protocol="compact", queue_size=10_000, queue_bytes=UDP_QUEUE_BYTES):
    """One Jaeger agent UDP port (see `start_jaeger_agents`)."""
    [receiver] = await start_jaeger_agents(host, [(port, protocol)], sink, queue_size=queue_size,
                                           queue_bytes=queue_bytes)
    return receiver


# HTTP: Jaeger collector and OTLP/HTTP --------------------------------------------------


async def start_jaeger_http(host, port, sink, *, max_body=MAX_BODY, token=None):
    """Jaeger collector HTTP: ``POST /api/traces`` with a binary thrift ``Batch``."""
    name = "Jaeger HTTP"
    counters = Counters()
    check = TokenCheck(token)
    threads = _decode_threads(name)

    async def post_traces(request):
        counters.payloads += 1
        if not check.basic(request.headers.get("Authorization")):
            counters.unauthorized += 1
            return web.Response(status=401, text=_UNAUTHORIZED,
                                headers={"WWW-Authenticate": 'Basic realm="eventscope spans"'})
        if request.content_type not in _THRIFT_TYPES:
            counters.bad_payloads += 1
            text = f"Content-Type must be application/x-thrift, not {request.content_type}"
            return web.Response(status=415, text=text)
        body = await _read_body(request, max_body, counters)
        try:
            result = await _off_the_loop(threads, decode_jaeger_batch, body, "binary")
        except SpanDecodeError as exc:
            counters.bad_payloads += 1
            return web.Response(status=400, text=exc.reason)
        try:
            await _deliver(name, result, sink, counters)
        except Exception:
            return web.Response(status=503, text=_RETRY_LATER)
        text = "; ".join(result.rejected[:10])
        return web.Response(status=202, text=f"{len(result.rejected)} spans rejected: {text}" if text else "")

    return await _start_http(name, host, port, "/api/traces", post_traces, max_body, counters, threads)


async def start_otlp_http(host, port, sink, *, max_body=MAX_BODY, token=None):
    """OTLP/HTTP: ``POST /v1/traces`` in protobuf or JSON, gzip or not."""
    name = "OTLP/HTTP"
    counters = Counters()
    check = TokenCheck(token)
    threads = _decode_threads(name)
    formats = {
        "application/x-protobuf": (decode_otlp_protobuf, lambda m: m.SerializeToString()),
        "application/json": (decode_otlp_json, lambda m: json_format.MessageToJson(m, indent=None)),
    }

    async def post_traces(request):
        counters.payloads += 1
        content_type = request.content_type
        decode, encode = formats.get(content_type, (None, None))

        def reply(status, message, headers=None):
            return web.Response(status=status, body=encode(message), content_type=content_type, headers=headers)

        if not check.bearer(request.headers.get("Authorization")):
            counters.unauthorized += 1
            challenge = {"WWW-Authenticate": 'Bearer realm="eventscope spans"'}
            if encode is None:
                return web.Response(status=401, text=_UNAUTHORIZED, headers=challenge)
            return reply(401, status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=_UNAUTHORIZED), challenge)
        if decode is None:
            counters.bad_payloads += 1
            text = f"Content-Type must be application/x-protobuf or application/json, not {content_type}"
            return web.Response(status=415, text=text)
        body = await _read_body(request, max_body, counters)
        try:
            result = await _off_the_loop(threads, decode, body)
        except SpanDecodeError as exc:
            counters.bad_payloads += 1
            return reply(400, status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=exc.reason))
        try:
            await _deliver(name, result, sink, counters)
        except Exception:
            return reply(503, status_pb2.Status(code=code_pb2.UNAVAILABLE, message=_RETRY_LATER))
        return reply(200, _export_response(result))

    return await _start_http(name, host, port, "/v1/traces", post_traces, max_body, counters, threads)


async def _read_body(request, max_body, counters):
    # Refuse by the declared length before reading; aiohttp's client_max_size
    # also stops chunked or gzip bodies that grow past max_body while read.
    if request.content_length is not None and request.content_length > max_body:
        counters.bad_payloads += 1
        raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=request.content_length)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        counters.bad_payloads += 1
        raise


async def _start_http(name, host, port, path, handler, max_body, counters, threads):
    app = web.Application(client_max_size=max_body)
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        threads.shutdown(wait=False)
        await runner.cleanup()
        raise

    async def stop():
        try:
            await runner.cleanup()
        finally:
            threads.shutdown(wait=False, cancel_futures=True)

    return Receiver(name, runner.addresses[0][1], counters, stop)


def _export_response(result):
    response = trace_service_pb2.ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = len(result.rejected)
        response.partial_success.error_message = "; ".join(result.rejected[:10])
    return response


# OTLP/gRPC ------------------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink, counters, check, threads):
        self.sink = sink
        self.counters = counters
        self.check = check
        self.threads = threads

    async def Export(self, request, context):
        self.counters.payloads += 1
        metadata = dict(context.invocation_metadata() or ())
        if not self.check.bearer(metadata.get("authorization")):
            self.counters.unauthorized += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _UNAUTHORIZED)
        result = await _off_the_loop(self.threads, decode_otlp_request, request)
        try:
            await _deliver("OTLP/gRPC", result, self.sink, self.counters)
        except Exception:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _RETRY_LATER)
        return _export_response(result)


async def start_otlp_grpc(host, port, sink, *, max_body=MAX_BODY, token=None):
    """OTLP/gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``."""
    counters = Counters()
    threads = _decode_threads("OTLP/gRPC")
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_body)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(sink, counters, TokenCheck(token), threads), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
    except BaseException:
        threads.shutdown(wait=False)
        raise

    async def stop():
        try:
            await server.stop(grace=2)
        finally:
            threads.shutdown(wait=False, cancel_futures=True)

    return Receiver("OTLP/gRPC", bound, counters, stop)
