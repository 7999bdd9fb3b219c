"""The collector's /metrics listens where EVENTSCOPE_METRICS_HOST says: loopback unless told
otherwise (compose sets 0.0.0.0 for its scraper)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from runner import servers

ROOT = Path(__file__).resolve().parents[2]
RECEIVER_PORTS = {"JAEGER_AGENT_PORT": "udp", "JAEGER_BINARY_PORT": "udp", "JAEGER_HTTP_PORT": "tcp",
                  "OTLP_HTTP_PORT": "tcp", "OTLP_GRPC_PORT": "tcp"}


def database_url():
    from django.db import connection

    db = connection.settings_dict
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def listening_address(pid, port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for connection in psutil.Process(pid).net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                return connection.laddr.ip
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


@pytest.mark.parametrize("host, expected", [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_the_collect_command_binds_metrics_to_eventscope_metrics_host(transactional_db, host, expected):
    port = servers.free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "EVENTSCOPE_METRICS_PORT": str(port),
           "EVENTSCOPE_DECODE_WORKERS": "0", "LOG_LEVEL": "WARNING"}
    env.pop("EVENTSCOPE_METRICS_HOST", None)
    if host:
        env["EVENTSCOPE_METRICS_HOST"] = host
    for variable, kind in RECEIVER_PORTS.items():
        env[variable] = str(servers.free_port(kind=kind))
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert listening_address(process.pid, port) == expected
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200 and "eventscope_messages_received_total" in response.text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
