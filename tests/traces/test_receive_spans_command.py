"""`manage.py receive_spans`: the span receivers as a service of their own (compose's
`spans`), so collectors scale without colliding on span ports; and `collect` with
EVENTSCOPE_SPAN_RECEIVERS=false opens none of them."""
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from runner import servers
from runner.supervise import RECEIVER_PORTS
from tests.ingest.test_reliability import ROOT, private  # noqa: F401 - fixture
from tests.traces.test_span_receivers import make_trace

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated method __init__:DeprecationWarning")


def own_ports(env, offset):
    env = dict(env)
    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + offset, kind=kind))
    return env


def listening(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Recorder(OTLPSpanExporter):
    def __init__(self, **options):
        super().__init__(**options)
        self.results = []

    def export(self, spans):
        self.results.append(super().export(spans))
        return self.results[-1]


def test_receive_spans_stores_otlp_spans_and_collect_can_leave_the_ports_to_it(private):  # noqa: F811
    env = own_ports(private.env, 22000)
    spans = subprocess.Popen([sys.executable, "manage.py", "receive_spans"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # A collector on the same ports, told to leave spans to the receivers' service: it must not take them.
    collector = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT,
                                 env={**env, "EVENTSCOPE_SPAN_RECEIVERS": "false"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    private.collectors += [spans, collector]
    port = int(env["OTLP_HTTP_PORT"])
    assert listening(port), spans.stderr.read().decode()[-2000:] if spans.poll() is not None else "not listening"
    exporter = Recorder(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    parent, _child = make_trace(exporter)
    assert exporter.results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    with psycopg.connect(private.pg.url) as conn:
        assert conn.execute("SELECT count(*) FROM collector_span WHERE trace_id = %s",
                            [f"{parent.context.trace_id:032x}"]).fetchone() == (2,)
    time.sleep(2)
    assert collector.poll() is None
    collector.send_signal(signal.SIGTERM)
    assert b"span receivers not started" not in collector.communicate(timeout=30)[1]
    spans.send_signal(signal.SIGTERM)
    assert spans.wait(timeout=30) == 0
