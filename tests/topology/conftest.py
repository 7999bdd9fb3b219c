"""Fixtures of the topology tests: a collector as `manage.py collect` runs it (span
receivers, dead-letter capture, lag sampler, topology), sampling every second and reading
spans a fraction of a second after they arrive."""
import pytest

from collector.deadletters import capture
from collector.lag import service as lag
from collector.models import LagSettings
from collector.topology import service as topology
from collector.topology import writer
from collector.traces import service as tracing
from tests.conftest import RunningCollector, wait_until


@pytest.fixture
def topology_collector(transactional_db, settings, monkeypatch):
    for name in ("JAEGER_AGENT_PORT", "JAEGER_BINARY_PORT", "JAEGER_HTTP_PORT", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT"):
        setattr(settings, name, 0)
    settings.EVENTSCOPE_SPANS_HOST = "127.0.0.1"
    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    monkeypatch.setattr(topology, "INTERVAL", 0.3)
    monkeypatch.setattr(writer, "SETTLE", writer.timedelta(seconds=0.3))
    running = RunningCollector(installs=[tracing.install, capture.install, lag.install, topology.install])
    wait_until(lambda: len(running.collector.span_receivers) == 5, 20, "the span receivers to listen")
    port = next(r.port for r in running.collector.span_receivers if r.name == "OTLP/HTTP")
    running.otlp_http = f"http://127.0.0.1:{port}/v1/traces"
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def unshared_graphs(monkeypatch):
    """Each request computes its graph: tests change the data between two requests."""
    from collector.topology import shared

    monkeypatch.setattr(shared, "CACHE_SECONDS", 0)
