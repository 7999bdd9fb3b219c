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
(64 KB at most) are read by a process of their own that only drains the sockets
(`collector.traces.udpdrain`) and decoded in a thread (`collector.traces.agent`).
"""
import asyncio
import base64
import binascii
import hmac
import logging
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

from collector.traces.jaeger import decode_jaeger_batch
from collector.traces.model import SpanDecodeError
from collector.traces.otlp import (
    decode_otlp_json,
    decode_otlp_protobuf,
    decode_otlp_request,
)

log = logging.getLogger("collector.spans.receivers")

MAX_BODY = 16 * 1024 * 1024
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


async def deliver(name, result, sink, counters):
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
            await deliver(name, result, sink, counters)
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
            await deliver(name, result, sink, counters)
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
            await deliver("OTLP/gRPC", result, self.sink, self.counters)
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
