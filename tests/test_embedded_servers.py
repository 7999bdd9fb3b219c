"""The embedded servers start, keep their data across restarts, stop, and recover
from a server a killed run left behind."""
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from runner import servers

pytestmark = pytest.mark.slow


@pytest.fixture
def folder():
    # A short path under var/: PostgreSQL's user must be able to enter every parent folder.
    root = Path(__file__).resolve().parent.parent / "var"
    root.mkdir(exist_ok=True)
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="srv-", dir=root))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postgres_starts_keeps_its_data_across_a_restart_and_stops(folder):
    server = servers.Postgres(folder / "postgres", durable=False).start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    assert server.process.returncode == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=2)
    again = servers.Postgres(folder / "postgres", port=server.port, durable=False).start()
    try:
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)
    finally:
        again.stop()


def test_nats_starts_with_jetstream_keeps_streams_across_a_restart_and_stops(folder):
    import asyncio

    import nats

    server = servers.Nats(folder / "nats").start()

    async def publish():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"1")
        await nc.close()

    async def count():
        nc = await nats.connect(server.url)
        info = await nc.jetstream().stream_info("KEPT")
        await nc.close()
        return info.state.messages

    asyncio.run(publish())
    server.stop()
    again = servers.Nats(folder / "nats", port=server.port).start()
    try:
        assert asyncio.run(count()) == 1
    finally:
        again.stop()
    assert again.process.returncode is not None


def test_redis_starts_answers_and_stops(folder):
    import redis

    with servers.Redis(folder / "redis") as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        client.close()
    assert server.process.poll() is not None


def test_a_server_left_running_by_a_killed_run_is_stopped_before_a_new_one_starts(folder):
    """A stale nats-server (its pid file still there) is stopped, not fatal."""
    data = folder / "nats"
    data.mkdir()
    port = servers.free_port()
    binary = Path(sys.executable).parent / "nats-server"
    orphan = subprocess.Popen([str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(data),
                               "-P", str(data / "nats-server.pid")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    servers.wait_for(lambda: not servers.port_is_free(port), "orphan nats")
    server = servers.Nats(data, port=port)
    try:
        server.start()
        assert orphan.wait(10) is not None
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            assert sock.recv(5) == b"INFO "
    finally:
        server.stop()
        if orphan.poll() is None:
            orphan.send_signal(signal.SIGKILL)


def test_a_stale_pid_file_of_a_dead_process_is_ignored(folder):
    data = folder / "redis"
    data.mkdir()
    (data / "redis.pid").write_text("999999\n")
    with servers.Redis(data) as server:
        assert server.ready()


def test_servers_die_with_the_process_that_started_them(folder):
    """No orphan survives a supervisor killed with SIGKILL."""
    script = (
        "import sys,time; from runner import servers; "
        f"s = servers.Redis({str(folder / 'redis')!r}).start(); print(s.process.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child_pid}").exists():
        status = Path(f"/proc/{child_pid}/status").read_text() if Path(f"/proc/{child_pid}/status").exists() else ""
        if "State:\tZ" in status:
            break
        time.sleep(0.1)
    status = Path(f"/proc/{child_pid}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_unit_die_with_parent_only_calls_prctl_and_loads_no_library(monkeypatch):
    """Unit test: `die_with_parent` runs as preexec_fn, between fork and exec, while the
    parent's relay threads run; loading a library there can deadlock, so libc is loaded
    once at import and the function only calls prctl."""
    import ctypes

    def loading(*args, **kwargs):
        raise AssertionError("a library is loaded between fork and exec")

    calls = []
    monkeypatch.setattr(ctypes, "CDLL", loading)
    monkeypatch.setattr(ctypes.cdll, "LoadLibrary", loading)
    monkeypatch.setattr(servers, "_prctl", lambda *args: calls.append(args) or 0, raising=False)
    servers.die_with_parent()
    assert calls == [(servers.PR_SET_PDEATHSIG, signal.SIGTERM)]
