"""The topology pages and API: roles, the window, errors, and the service page's sections
(rows written through the topology writer and the events' rollup, as the collector keeps them)."""
from datetime import UTC, datetime, timedelta

import pytest

from collector.models import Broker, EventRollup, ServiceInstance, TopologyPublishRollup
from collector.topology import writer
from collector.topology.registrations import Registration

pytestmark = pytest.mark.django_db


def rollup(**fields):
    """An events' rollup row, and the coarse publish rows the collector adds beside it."""
    row = EventRollup.objects.create(**fields)
    for width in writer.PUBLISH_WIDTHS:
        TopologyPublishRollup.objects.create(
            width=width, minute=writer.block_start(row.minute, width), broker=row.broker, subject=row.subject,
            producer=row.producer, type=row.type, version=row.version, count=row.count, bytes=row.bytes,
            errors=row.errors)


@pytest.fixture
def shop(db):
    now = datetime.now(UTC)
    broker = Broker.objects.get_or_create(name="nats", defaults={"url": "nats://x"})[0]
    minute = now.replace(second=0, microsecond=0)
    rollup(minute=minute, broker=broker, subject="orders.created", producer="go.micro.srv.order",
           type="order.created", version="2", count=120, bytes=12000, errors=0)
    writer.record_registrations([(Registration("go.micro.srv.order", "1.4.0", "order-1", "", 1, False), now),
                                 (Registration("go.micro.srv.order", "1.4.0", "order-2", "", 1, False), now)])
    return now


def test_anonymous_users_are_sent_to_login_and_users_without_a_role_get_403(client, shop, dave):
    assert client.get("/topology/").status_code == 302
    assert client.get("/api/topology").status_code in (302, 401, 403)
    client.force_login(dave)
    assert client.get("/topology/").status_code == 403
    assert client.get("/api/topology").status_code == 403


def test_the_api_takes_the_window_and_says_what_is_wrong_with_a_bad_one(viewer_client, shop):
    body = viewer_client.get("/api/topology?last=15m").json()
    assert body["window"]["last"] == "15m"
    ids = {n["id"] for n in body["nodes"]}
    assert {"service:go.micro.srv.order", "topic:orders.created"} <= ids
    order = next(n for n in body["nodes"] if n["id"] == "service:go.micro.srv.order")
    assert (order["namespace"], order["instances"], order["versions"]) == ("go.micro.srv", 2, ["1.4.0"])
    assert viewer_client.get("/api/topology?last=soon").status_code == 400
    assert viewer_client.get("/api/topology?hops=many").status_code == 400
    # A week ago nothing was there: the window travels.
    old = shop - timedelta(days=7)
    body = viewer_client.get(f"/api/topology?from={old.isoformat()}&to={(old + timedelta(hours=1)).isoformat()}").json()
    assert not [n for n in body["nodes"] if n["id"] == "topic:orders.created"]


def test_an_edge_gone_since_the_window_before_is_marked_gone(viewer_client, shop):
    broker = Broker.objects.get(name="nats")
    rollup(minute=shop.replace(second=0, microsecond=0) - timedelta(minutes=20), broker=broker,
           subject="carts.updated", producer="go.micro.srv.cart", count=3)
    body = viewer_client.get("/api/topology?last=15m").json()
    edges = {e["id"]: e for e in body["edges"]}
    assert edges["publish:service:go.micro.srv.cart->topic:carts.updated"]["change"] == "gone"
    assert edges["publish:service:go.micro.srv.order->topic:orders.created"]["change"] == "new"


def test_the_service_page_shows_what_it_publishes_with_versions_and_its_instances(viewer_client, shop):
    page = viewer_client.get("/services/go.micro.srv.order/?last=1h").content.decode()
    assert "orders.created" in page and "order.created" in page and "v2" in page
    assert "order-1" in page and "order-2" in page and "2 <span class=\"muted\">(from registrations)" in page
    assert 'src="/static/eventscope/topology.js"' in page


def test_a_service_never_seen_answers_404_on_its_page(viewer_client, shop):
    assert viewer_client.get("/services/nobody/?last=1h").status_code == 404


def test_the_topology_page_carries_its_api_link_with_the_window_and_no_inline_script(viewer_client, shop):
    page = viewer_client.get("/topology/?last=6h").content.decode()
    assert 'data-api="/api/topology?last=6h"' in page
    assert "<script>" not in page and "topology.js" in page


def test_a_later_deregistration_wins_and_an_earlier_one_arriving_late_does_not(db):
    now = datetime.now(UTC)
    alive = Registration("mailer", "1", "m-1", "", 1, False)
    gone = Registration("mailer", "1", "m-1", "", 1, True)
    writer.record_registrations([(alive, now)])
    writer.record_registrations([(gone, now - timedelta(minutes=1))])  # older news, delivered late
    assert ServiceInstance.objects.get().deregistered is None
    writer.record_registrations([(gone, now + timedelta(minutes=1))])
    row = ServiceInstance.objects.get()
    assert row.deregistered is not None and row.first_seen == now - timedelta(minutes=1)


def test_polling_pages_share_an_answer_for_a_few_seconds_then_see_new_data(shop, monkeypatch):
    from collector.topology import shared

    monkeypatch.setattr(shared, "CACHE_SECONDS", 10.0)
    clock = [1000.0]
    monkeypatch.setattr(shared, "_clock", lambda: clock[0])
    monkeypatch.setattr(shared, "_cache", {})
    end = datetime.fromtimestamp(int(shop.timestamp()) // 10 * 10 + 10, UTC)  # the start of a 10 s step
    first, _ = shared.shared_graph(end - timedelta(hours=1), end)
    rollup(minute=shop.replace(second=0, microsecond=0), broker=Broker.objects.get(name="nats"),
           subject="carts.updated", producer="go.micro.srv.cart", count=3)
    # Same window length, end in the same step: the same answer, not recomputed.
    again, _ = shared.shared_graph(end - timedelta(hours=1) + timedelta(seconds=9), end + timedelta(seconds=9))
    assert again is first and "topic:carts.updated" not in {n["id"] for n in again["nodes"]}
    # Another length is another answer; and once the time is up the same window is computed again.
    other, _ = shared.shared_graph(end - timedelta(hours=2), end)
    assert "topic:carts.updated" in {n["id"] for n in other["nodes"]}
    clock[0] += 10.5
    fresh, _ = shared.shared_graph(end - timedelta(hours=1), end)
    assert fresh is not first and "topic:carts.updated" in {n["id"] for n in fresh["nodes"]}


def test_a_committed_batch_adds_its_new_events_to_the_publish_blocks(db):
    from types import SimpleNamespace

    broker = Broker.objects.get_or_create(name="nats", defaults={"url": "nats://x"})[0]
    at = datetime(2026, 11, 30, 10, 59, 58, tzinfo=UTC)

    def row(ident, ts, note=None):
        return SimpleNamespace(id=ident, ts=ts, broker_id=broker.id, subject="orders.created", producer="order",
                               type="order.created", version="2", size=100, note=note)

    # A replay (no id) counts nothing; 10:59:58 and 11:00:03 fall in different blocks of every width.
    writer.record_publishes([row(1, at), row(2, at, note="bad"), row(None, at), row(3, at + timedelta(seconds=5))])
    found = sorted(TopologyPublishRollup.objects.values_list("width", "minute", "count", "bytes", "errors"))
    assert found == sorted(
        [(w, writer.block_start(at, w), 2, 200, 1) for w in writer.PUBLISH_WIDTHS]
        + [(w, writer.block_start(at + timedelta(seconds=5), w), 1, 100, 0) for w in writer.PUBLISH_WIDTHS])
    assert {m.minute for m in TopologyPublishRollup.objects.filter(width=60)} == {at.replace(minute=0, second=0),
                                                                                  at.replace(hour=11, minute=0, second=0)}
