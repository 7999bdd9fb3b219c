"""The Jaeger agent's socket drain: a small process that only reads datagrams.

    UDP socket ──recvfrom──▶ this process (bounded queue) ──pipe──▶ the collector decodes

A burst of agent datagrams (tens of MB: one exporter flushing 500 batches) overflows the
kernel's receive buffer (net.core.rmem_max, 4 MiB here) in milliseconds while the collector
decodes earlier datagrams (~10 ms each in pure-Python thrift compact). A thread of the
collector cannot drain the socket in time: it only gets the interpreter lock every 5 ms
while a decode holds it. This process has an interpreter of its own and no other work,
so it empties the socket as fast as the kernel fills it and keeps what the collector has
not taken yet in a queue bounded by count and bytes; what that queue cannot hold is
counted, never silently lost.

It runs as its own script (standard library only, nothing of Django), started by
`collector.traces.receivers.start_jaeger_agent` with the bound socket and a pipe's write
end as inherited file descriptors. Each frame on the pipe is

    header  !IQQH  data length, datagrams received so far, datagrams dropped so far, address length
    address (ASCII), data

so the counts reach the collector with the datagrams (a drop happens only while the queue
is full, so frames that carry the new count follow it). The process exits when the pipe's
reader goes away or the collector dies (parent-death signal).
"""
import collections
import ctypes
import os
import select
import signal
import socket
import struct
import sys

HEADER = struct.Struct("!IQQH")
DRAIN_AT_ONCE = 256  # datagrams read before the pipe gets a turn, so a flood cannot starve it
PIPE_SIZE = 1024 * 1024  # the largest a user may set (fs.pipe-max-size); fewer wake-ups per burst


def _die_with_parent(parent_pid):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def drain(sock, pipe_fd, max_datagrams, max_bytes):
    """Read `sock` into a bounded queue and write the queue to `pipe_fd` until the pipe closes."""
    sock.setblocking(False)
    os.set_blocking(pipe_fd, False)
    try:
        import fcntl

        fcntl.fcntl(pipe_fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass
    queue, queued_bytes = collections.deque(), 0
    received = dropped = 0
    out, offset = b"", 0
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    want_out = False
    while True:
        poller.poll()
        for _ in range(DRAIN_AT_ONCE):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            received += 1
            if len(queue) >= max_datagrams or queued_bytes + len(data) > max_bytes:
                dropped += 1
                continue
            queue.append((data, addr[0].encode()))
            queued_bytes += len(data)
        while out or queue:
            if not out:
                data, host = queue.popleft()
                queued_bytes -= len(data)
                out, offset = HEADER.pack(len(data), received, dropped, len(host)) + host + data, 0
            try:
                offset += os.write(pipe_fd, memoryview(out)[offset:])
            except BlockingIOError:
                break
            except (BrokenPipeError, OSError):
                return
            if offset == len(out):
                out = b""
        pending = bool(out or queue)
        if pending != want_out:
            want_out = pending
            if pending:
                poller.register(pipe_fd, select.POLLOUT)
            else:
                poller.unregister(pipe_fd)


def main(argv):
    sock_fd, pipe_fd, parent_pid, max_datagrams, max_bytes = (int(a) for a in argv)
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the collector decides when this ends
    sock = socket.socket(fileno=sock_fd)
    drain(sock, pipe_fd, max_datagrams, max_bytes)


if __name__ == "__main__":
    main(sys.argv[1:])
