"""The Jaeger agent receiver (UDP 6831 compact, 6832 binary): the sockets, the one
process that drains them (`collector.traces.udpdrain`), and the thread that decodes what it
passes on and hands the spans to the sink on the event loop. UDP cannot ask for a retry:
what the sink does not take is counted as lost, what the drain's queue or the kernel drops
is counted too."""
import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading

from collector.traces import udpdrain
from collector.traces.jaeger import decode_jaeger_agent
from collector.traces.model import SpanDecodeError
from collector.traces.receivers import Counters, Receiver, deliver

log = logging.getLogger("collector.spans.receivers")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
UDP_QUEUE_BYTES = 64 * 1024 * 1024  # a burst of ~1,000 full agent datagrams waits here to be decoded


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
        """The drain process starts with the receiver (~9 MB): started at the first datagram
        instead, a first burst larger than the kernel's receive buffer overflowed it while the
        process was spawning (tens of milliseconds, far more on a loaded machine)."""
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
        delivered = asyncio.run_coroutine_threadsafe(deliver(port.name, result, self.sink, port.counters), self.loop)
        try:
            # Waiting here holds the pipe back while the sink's queue is full: the drain's
            # bounded queue then fills, and what it cannot hold is counted there.
            delivered.result()
        except Exception:  # noqa: BLE001, S110 - counted and logged by deliver; UDP cannot ask for a retry
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
