"""`./eventscope test`: the whole suite against fresh embedded servers (or the ones the
URL variables name), with the exit code of pytest."""
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from runner import servers
from runner.supervise import RECEIVER_PORTS, ROOT, VAR


def _loud(message):
    bar = "!" * 78
    print(f"{bar}\n!! {message}\n{bar}", flush=True)


def run(pytest_args):
    VAR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # A fresh strong key per run: the settings refuse a weak one with DEBUG off, as here.
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    env.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    env["DEBUG"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    if not shutil.which("chromium") and not env.get("CHROMIUM"):
        _loud("Chromium is missing: the browser tests are SKIPPED (apt-get install chromium)")
    for variable, (default, kind) in RECEIVER_PORTS.items():
        # Collectors started by the tests must not collide with one already running here.
        env.setdefault(variable, str(servers.free_port(default + 10000, kind=kind)))
    folder = Path(tempfile.mkdtemp(prefix="test-", dir=VAR))
    started = []
    try:
        started = servers.start_missing(folder, env, durable=False)
        for server in started:
            print(f"Eventscope tests: embedded {server.name} at {server.url}", flush=True)
        command = [sys.executable, "-m", "pytest", *pytest_args]
        return subprocess.call(command, env=env, cwd=ROOT)
    except KeyboardInterrupt:
        return 130
    finally:
        servers.stop_all(started)
        shutil.rmtree(folder, ignore_errors=True)
