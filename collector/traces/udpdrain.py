"""The Jaeger agent sockets' drain: one small process that only reads datagrams.

    UDP sockets ──recvfrom──▶ this process (one bounded queue) ──pipe──▶ the collector decodes

A burst of agent datagrams (tens of MB: one exporter flushing 500 batches) overflows the
kernel's receive buffer (net.core.rmem_max, 4 MiB here) in milliseconds while the collector
decodes earlier datagrams (~10 ms each in pure-Python thrift compact). A thread of the
collector cannot drain a socket in time: it only gets the interpreter lock every 5 ms
while a decode holds it. This process has an interpreter of its own and no other work,
so it empties the sockets as fast as the kernel fills them and keeps what the collector
has not taken yet in a queue bounded by count and bytes; what that queue cannot hold is
counted, never silently lost.

It runs as its own script (`python -I -S`, C modules only: ~9 MB resident), started by
`collector.traces.receivers` with the bound sockets and a pipe's write end as inherited
file descriptors. Each frame on the pipe is

    header  !BIQQH  socket index, data length, datagrams received on that socket so far,
                    dropped on it so far, address length
    address (ASCII), data

so the counts reach the collector with the datagrams (a drop happens only while the queue
is full, so frames that carry the new count follow it). The process exits when the pipe's
reader goes away or the collector (its parent) is gone.
"""
import _collections
import _signal
import _socket
import _struct
import os
import select
import sys

HEADER = _struct.Struct("!BIQQH")
DRAIN_AT_ONCE = 256  # datagrams read from a socket before the pipe gets a turn, so a flood cannot starve it
PIPE_SIZE = 1024 * 1024  # the largest a user may set (fs.pipe-max-size); fewer wake-ups per burst
F_SETPIPE_SZ = 1031
PARENT_CHECK_MS = 1000


def drain(sockets, pipe_fd, parent_pid, max_datagrams, max_bytes):
    """Read `sockets` into one bounded queue and write it to `pipe_fd` until the pipe closes
    or the parent is gone."""
    for sock in sockets:
        sock.setblocking(False)
    os.set_blocking(pipe_fd, False)
    try:
        import fcntl

        fcntl.fcntl(pipe_fd, F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, OSError):
        pass
    queue, queued_bytes = _collections.deque(), 0
    received, dropped = [0] * len(sockets), [0] * len(sockets)
    by_fd = {sock.fileno(): (index, sock) for index, sock in enumerate(sockets)}
    out, offset = b"", 0
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    want_out = False
    while True:
        ready = poller.poll(PARENT_CHECK_MS)
        if os.getppid() != parent_pid:
            return  # the collector died (SIGKILL included): free the ports for the next one
        for fd, _events in ready:
            if fd not in by_fd:
                continue
            index, sock = by_fd[fd]
            for _ in range(DRAIN_AT_ONCE):
                try:
                    data, addr = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                received[index] += 1
                if len(queue) >= max_datagrams or queued_bytes + len(data) > max_bytes:
                    dropped[index] += 1
                    continue
                queue.append((index, data, str(addr[0]).encode()))
                queued_bytes += len(data)
        while out or queue:
            if not out:
                index, data, host = queue.popleft()
                queued_bytes -= len(data)
                header = HEADER.pack(index, len(data), received[index], dropped[index], len(host))
                out, offset = header + host + data, 0
            try:
                offset += os.write(pipe_fd, memoryview(out)[offset:])
            except BlockingIOError:
                break
            except OSError:  # the collector closed its end: nothing more to do
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
    pipe_fd, parent_pid, max_datagrams, max_bytes, *socket_fds = (int(a) for a in argv)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # the collector decides when this ends
    sockets = [_socket.socket(fileno=fd) for fd in socket_fds]
    drain(sockets, pipe_fd, parent_pid, max_datagrams, max_bytes)


if __name__ == "__main__":
    main(sys.argv[1:])
