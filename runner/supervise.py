"""`./eventscope up`: one supervisor for the embedded servers and the four processes.

Each process is the plain command of the deployment (daphne, collect, celery, demo),
configured only by environment variables; this is just one way to run them.
"""
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from runner import servers

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("EVENTSCOPE_VAR", ROOT / "var"))


RECEIVER_PORTS = {
    "JAEGER_AGENT_PORT": (6831, "udp"),
    "JAEGER_BINARY_PORT": (6832, "udp"),
    "JAEGER_HTTP_PORT": (14268, "tcp"),
    "OTLP_HTTP_PORT": (4318, "tcp"),
    "OTLP_GRPC_PORT": (4317, "tcp"),
    "EVENTSCOPE_METRICS_PORT": (9464, "tcp"),
}


class Child:
    """One supervised process; restarted with growing waits if it dies on its own."""

    def __init__(self, name, args, env):
        self.name, self.args, self.env = name, args, env
        self.process = None
        self.failures = 0
        self.next_start = 0.0

    def start(self):
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=servers.die_with_parent, start_new_session=True,
        )
        threading.Thread(target=self._relay, args=(self.process,), daemon=True).start()

    def _relay(self, process):
        for line in iter(process.stdout.readline, b""):
            sys.stdout.write(f"{self.name:>9} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def check(self, now):
        """Restart a dead child, waiting 1, 2, 4 … 30 s between tries."""
        if self.process is None or self.process.poll() is None:
            return
        if self.next_start == 0.0:
            self.failures += 1
            wait = min(30, 2 ** (self.failures - 1))
            print(f"Eventscope: {self.name} exited with code {self.process.returncode}; restarting in {wait} s",
                  flush=True)
            self.next_start = now + wait
        elif now >= self.next_start:
            self.next_start = 0.0
            self.start()

    def terminate(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, deadline):
        if self.process is None:
            return
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"Eventscope: {self.name} did not stop in time; killing it", flush=True)
            self.process.kill()
            self.process.wait()


def _secret_key():
    path = VAR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def base_environment(debug=False):
    """The environment for all processes: the caller's, plus the embedded servers' URLs.
    DEBUG stays as the caller set it (off by default): `--debug` turns it on."""
    VAR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", _secret_key())
    if debug:
        env["DEBUG"] = "true"
    env.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise Stop()


def up(demo=False, no_demo=False, debug=False):
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    env = base_environment(debug=debug)
    embedded_nats = not env.get("NATS_URL")
    started, children = [], []
    python = sys.executable
    try:
        started = servers.start_missing(VAR, env)
        for server in started:
            print(f"Eventscope: embedded {server.name} at {server.url} (data in {server.folder})", flush=True)
        manage = [python, str(ROOT / "manage.py")]
        subprocess.run(manage + ["migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
        subprocess.run(manage + ["ensure_admin"], env=env, cwd=ROOT, check=True)
        requested = int(env.get("EVENTSCOPE_HTTP_PORT") or 8000)
        port = servers.free_port(requested)
        env["EVENTSCOPE_HTTP_PORT"] = str(port)
        for variable, (default, kind) in RECEIVER_PORTS.items():
            # The standard port when it is free, else the next free one (the demo follows).
            if not env.get(variable):
                env[variable] = str(servers.free_port(default, kind=kind))
                if env[variable] != str(default):
                    print(f"Eventscope: {variable}={env[variable]} ({default} is taken)", flush=True)
        bin_dir = Path(python).parent
        children = [
            Child("web", [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"],
                  env),
            Child("collector", manage + ["collect"], env),
            Child("worker", [str(bin_dir / "celery"), "-A", "dashboard", "worker", "-l", "info",
                             "--concurrency", "2"], env),
        ]
        if (embedded_nats or demo) and not no_demo and _demo_available():
            children.append(Child("demo", manage + ["demo"], env))
        elif not no_demo and not embedded_nats:
            print("Eventscope: NATS_URL names a real bus, so no demo traffic (use --demo to send it anyway)",
                  flush=True)
        for child in children:
            child.start()
        servers.wait_for(lambda: not servers.port_is_free(port), "web", 60, children[0].process)
        print(f"\nEventscope: http://127.0.0.1:{port}/\n", flush=True)
        while True:
            now = time.monotonic()
            for child in children:
                child.check(now)
            time.sleep(0.5)
    except Stop:
        print("\nEventscope: stopping", flush=True)
    except subprocess.CalledProcessError as error:
        print(f"Eventscope: {' '.join(map(str, error.cmd[1:3]))} failed with code {error.returncode}", flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            child.terminate()
        deadline = time.monotonic() + 20
        for child in children:
            child.wait(deadline)
        servers.stop_all(started)
    return 0


def _demo_available():
    return (ROOT / "collector" / "management" / "commands" / "demo.py").exists()


def servers_only():
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    env = base_environment()
    started = []
    try:
        started = servers.start_missing(VAR, env)
        for variable in servers.EMBEDDED:
            print(f"export {variable}={env[variable]}", flush=True)
        while True:
            time.sleep(3600)
    except Stop:
        pass
    finally:
        servers.stop_all(started)
    return 0
