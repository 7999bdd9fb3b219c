"""The answer to "can we stop publishing v1?", from traffic published through real NATS into a
running collector and spans exported by the real OpenTelemetry exporter."""
from datetime import UTC, datetime, timedelta

from collector.models import VersionConsumer
from tests.conftest import wait_until
from tests.versions.conftest import publish_envelopes, stored, unique


def test_a_consumer_that_never_processed_v2_blocks_retiring_v1_until_it_does(versions_collector, spans, nats_url,
                                                                            admin_client_):
    """billing processes v1 and v2, audit only v1: v1 is blocked by audit, and says so; once
    audit processes v2 too, v1 (no longer produced in the window) is safe to retire."""
    stream, subject, type_ = unique("RETIRE"), unique("retire.") + ".created", unique("shop") + ".order.created"
    v1 = publish_envelopes(nats_url, stream, subject, [(type_, 1, {"item": "mug", "qty": i}) for i in range(5)])
    stored(type_, 5)
    after_v1 = datetime.now(UTC)
    v2 = publish_envelopes(nats_url, stream + "B", subject + ".b",
                           [(type_, 2, {"sku": "mug", "qty": i, "currency": "EUR"}) for i in range(5)])
    stored(type_, 10)
    order_v1, order_v2 = spans.tracer("order", "1.4.0", "order-a"), spans.tracer("order", "2.0.0", "order-b")
    spans.produce(order_v1, subject, v1)
    spans.produce(order_v2, subject + ".b", v2)
    billing, audit = spans.tracer("billing"), spans.tracer("audit")
    spans.consume(billing, subject, v1, "billing")
    spans.consume(billing, subject + ".b", v2, "billing")
    spans.consume(audit, subject, v1, "audit")
    spans.consume(audit, subject + ".b", v2[:1], "audit", error=True)  # it tried, and failed
    wait_until(lambda: VersionConsumer.objects.filter(type=type_, consumer="audit", version="2", failed=1).exists()
               and VersionConsumer.objects.filter(type=type_, consumer="billing", processed=5).count() == 2,
               20, "consumer spans linked to versions")

    window = {"from": after_v1.isoformat(), "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    data = admin_client_.get(f"/api/versions/{type_}", window).json()
    v1_row = next(v for v in data["versions"] if v["version"] == "1")
    assert v1_row["status"] == "blocked"
    assert not v1_row["answer"]["safe"]
    assert [(b["kind"], b["name"]) for b in v1_row["answer"]["blockers"]] == [("consumer", "audit")]
    assert "consumer audit has never processed v2" in v1_row["answer"]["text"]
    assert "last produced" in v1_row["answer"]["text"] and "order@1.4.0 (1 instance)" in v1_row["answer"]["text"]
    matrix = {row["name"]: row["cells"] for row in data["consumers"]}
    assert [c["processed"] for c in matrix["audit"]] == [True, False]
    assert matrix["audit"][1]["failed"] == 1
    page = admin_client_.get(f"/versions/{type_}/", window).content.decode()
    assert "consumer audit has never processed v2" in page

    spans.consume(audit, subject + ".b", v2[1:], "audit")
    wait_until(lambda: VersionConsumer.objects.filter(type=type_, consumer="audit", version="2", processed=4).exists(),
               20, "audit's v2 spans linked")
    data = admin_client_.get(f"/api/versions/{type_}", window).json()
    v1_row = next(v for v in data["versions"] if v["version"] == "1")
    assert v1_row["status"] == "safe to retire", v1_row["answer"]
    assert v1_row["answer"]["text"].endswith("safe to retire")
    assert "consumers audit and billing both processed v2 since" in v1_row["answer"]["text"]
    listed = admin_client_.get("/api/versions", {**window, "status": "safe to retire"}).json()
    assert [t["type"] for t in listed["types"]] == [type_]
