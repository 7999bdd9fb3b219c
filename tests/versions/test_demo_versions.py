"""The demo shop's order service publishes order.created v1 (`item`) from half its instances and
v2 (`sku` + `currency`) from the other half; payment and inventory consume both. Run through
real NATS, the real exporters and a running collector, the versions pages show it."""
import pytest
from django.core.management import call_command

from collector.models import VersionConsumer, VersionInstance
from tests.conftest import wait_until
from tests.versions.conftest import stored, unique

pytestmark = pytest.mark.slow


def test_the_demo_order_service_gives_the_expected_matrix_diff_and_answer(versions_collector, admin_client_,
                                                                        monkeypatch, capsys):
    monkeypatch.setenv("OTLP_HTTP_PORT", str(versions_collector.otlp_port))
    namespace = unique("vers")
    call_command("demo", count=24, rate=100, fail_fraction=0.5, max_deliver=2, retry_delay=0.05, slow_delay=0.01,
                 initial_stock=1, wave_period=0, drain_timeout=20, exporters="otlp-http", namespace=namespace,
                 formats="envelope")
    assert '"orders": 24' in capsys.readouterr().out
    type_ = "order.created"
    stored(type_, 24)
    wait_until(lambda: set(VersionConsumer.objects.filter(type=type_, processed__gt=0)
                           .values_list("consumer", "version")) >= {("payment", "1"), ("payment", "2"),
                                                                    ("inventory", "1"), ("inventory", "2")},
               30, "payment and inventory linked to both versions")
    wait_until(lambda: VersionInstance.objects.filter(type=type_).count() == 4, 20, "the four order instances")
    wait_until(lambda: VersionConsumer.objects.filter(type=type_, version="2", dead_letters__gt=0).exists(), 30,
               "dead letters of v2 payments")

    data = admin_client_.get(f"/api/versions/{type_}", {"last": "15m"}).json()
    assert [v["version"] for v in data["versions"]] == ["1", "2"]
    assert data["versions"][0]["count"] + data["versions"][1]["count"] == 24
    producers = {row["name"]: row["cells"] for row in data["producers"]}
    assert list(producers) == ["order"]
    v1, v2 = producers["order"]
    assert (v1["service_versions"], v1["instances"], v2["service_versions"], v2["instances"]) == (
        ["1.0.0"], 2, ["2.0.0"], 2)
    consumers = {row["name"]: [c and c["processed"] for c in row["cells"]] for row in data["consumers"]}
    assert consumers["payment"] == consumers["inventory"] == [True, True]

    changes = {c["path"]: c["change"] for c in data["diff"]["changes"]}
    assert (data["diff"]["left"], data["diff"]["right"]) == ("1", "2")
    assert changes == {"item": "removed", "sku": "added", "currency": "added"}
    examples = {c["path"]: c["example"] for c in data["diff"]["changes"]}
    assert examples["currency"] == '"EUR"' and examples["item"] in {'"mug"', '"tee"', '"poster"', '"tote"'}

    first, newest = data["versions"]
    assert newest["status"] == "current" and first["status"] == "superseded"
    kinds = {b["kind"] for b in first["answer"]["blockers"]}
    assert kinds == {"producer", "dead_letters"}
    assert "order@1.0.0 (2 instances) still produces v1" in first["answer"]["text"]
    assert "dead letters on v2 (payment)" in first["answer"]["text"]
