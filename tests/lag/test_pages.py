"""Consumer pages, API, Prometheus gauges and threshold crossings, from what a real sampler
stored about real JetStream consumers."""
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from collector.models import DeadLetterSettings, Consumer, LagCrossing, LagThreshold
from runner.servers import free_port
from tests.conftest import wait_until
from tests.lag.conftest import (
    add_pull_consumer,
    consumer_row,
    make_stream,
    publish,
    unique,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lagging(lag_collector, nats_url):
    """A stream with a consumer 12 messages behind and one of its observer, sampled."""
    stream = unique("LAGV")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "inventory", f"{stream.lower()}.orders")
    publish(nats_url, f"{stream.lower()}.orders", 12)
    consumer = consumer_row(stream, "inventory")
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 12, 10, "the lag sampled")
    time.sleep(1.5)  # a few samples for the history
    return Consumer.objects.get(pk=consumer.pk)


def test_the_consumer_list_shows_lag_and_keeps_the_observers_apart(lagging, viewer_client):
    page = viewer_client.get("/consumers/?last=15m").content.decode()
    row = page[page.index('id="consumers"'):page.index("</table>", page.index('id="consumers"'))]
    assert f"/consumers/{lagging.stream}/inventory/" in row and ">12<" in row
    assert "eventscope" not in row  # the observer is not mixed into users' consumers
    assert 'id="observers"' in page


def test_the_list_filters_by_stream_status_and_name_and_pages_by_keyset(lagging, viewer_client):
    api = viewer_client.get(f"/api/consumers?last=15m&stream={lagging.stream}").json()
    assert [c["name"] for c in api["consumers"]] == ["inventory"]
    assert api["consumers"][0]["lag"] == 12 and len(api["consumers"][0]["spark"]) == 30
    assert viewer_client.get("/api/consumers?q=nosuchconsumer").json()["consumers"] == []
    assert viewer_client.get("/api/consumers?status=weird").status_code == 400
    assert viewer_client.get("/consumers/?after=garbage").status_code == 400
    # Keyset pages: one consumer a page, in lag order, none twice.
    from collector.lag import readers

    seen, cursor = [], None
    while True:
        rows, cursor = readers.consumers({}, sort="lag", after=cursor, limit=1)
        seen += [row["id"] for row in rows]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == Consumer.objects.filter(observer=False).count()


def test_the_detail_page_and_api_give_history_configuration_and_reconciliation(lagging, viewer_client):
    response = viewer_client.get(f"/consumers/{lagging.stream}/inventory/?last=15m")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="lag-data"' in page and "data-lag-chart" in page
    assert "pull" in page and f"{lagging.stream.lower()}.orders" in page
    assert "durable name" in page  # no consumer spans: the service is its durable name, and it says so
    data = viewer_client.get(f"/api/consumers/{lagging.stream}/inventory?last=15m").json()
    assert data["history"]["resolution"] == "raw" and data["history"]["lag"][-1] == 12
    assert data["reconciliation"]["total"] == 12
    assert {t["term"]: t["count"] for t in data["reconciliation"]["terms"]}["pending"] == 12
    assert viewer_client.get(f"/api/consumers/{lagging.stream}/nosuch").status_code == 404
    assert viewer_client.get(f"/consumers/{lagging.stream}/nosuch/").status_code == 404


def test_a_user_in_no_group_sees_no_consumers(lagging, client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("nobody", password="x"))
    assert client.get("/consumers/").status_code == 403
    assert client.get("/api/consumers").status_code == 403


def test_the_collector_exposes_per_consumer_gauges_on_its_metrics_port(lagging, lag_collector):
    port = free_port()
    server = lag_collector.collector.metrics.serve(port, host="127.0.0.1")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    labels = f'broker="nats",consumer="inventory",stream="{lagging.stream}"'
    assert f"eventscope_consumer_pending{{{labels}}} 12.0" in text
    assert f"eventscope_consumer_ack_pending{{{labels}}} 0.0" in text
    assert f"eventscope_consumer_oldest_age_seconds{{{labels}}}" in text
    assert 'consumer="eventscope"' not in text


class Hook(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_threshold_crossing_is_recorded_once_and_posted_to_the_webhook(lag_collector, nats_url):
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stream = unique("LAGT")
    LagThreshold.objects.create(stream=stream, max_lag=5, webhook=f"http://127.0.0.1:{port}/hook")
    DeadLetterSettings.objects.update_or_create(pk=1, defaults={"allow_private_webhooks": True})  # a loopback hook
    try:
        make_stream(nats_url, stream, [f"{stream.lower()}.>"])
        add_pull_consumer(nats_url, stream, "payments")
        publish(nats_url, f"{stream.lower()}.x", 3)
        consumer = consumer_row(stream, "payments")
        wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 3, 10, "lag 3 sampled")
        assert Consumer.objects.get(pk=consumer.pk).status == "ok"
        publish(nats_url, f"{stream.lower()}.x", 5)
        crossing = wait_until(lambda: LagCrossing.objects.filter(consumer=consumer, status_to="lagging").first(), 10,
                              "the crossing to lagging")
        wait_until(lambda: LagCrossing.objects.get(pk=crossing.pk).notified, 10, "the webhook outcome")
        time.sleep(2)
        assert LagCrossing.objects.filter(consumer=consumer).count() == 1  # once, not every round
        assert LagCrossing.objects.get(pk=crossing.pk).notified == "posted: HTTP 200"
        body = next(b for b in Hook.received if b["stream"] == stream)
        assert (body["consumer"], body["from"], body["to"], body["lag"]) == ("payments", "ok", "lagging", 8)
        assert "above 5" in body["reason"]
    finally:
        server.shutdown()


def test_the_service_behind_a_consumer_is_corrected_by_its_consumer_spans_and_says_so(
        lagging, span_collector, viewer_client):
    """Its durable name says `inventory`; the consumer spans a real exporter sent name the
    service that processes its messages, and the page says where the name came from."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from collector.models import Span

    provider = TracerProvider(resource=Resource.create({"service.name": "stock-keeper"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=span_collector.otlp_http)))
    tracer = provider.get_tracer("shop.stock")
    attributes = {"messaging.system": "nats", "messaging.destination.name": f"{lagging.stream.lower()}.orders",
                  "messaging.consumer.group.name": "inventory", "messaging.operation": "process"}
    with tracer.start_as_current_span(f"process {lagging.stream.lower()}.orders", kind=trace.SpanKind.CONSUMER,
                                      attributes=attributes):
        pass
    provider.shutdown()
    wait_until(lambda: Span.objects.filter(service="stock-keeper").exists(), 15, "the consumer span stored")
    data = viewer_client.get(f"/api/consumers/{lagging.stream}/inventory?last=15m").json()
    assert data["service"]["name"] == "stock-keeper"
    assert "consumer span" in data["service"]["source"]
    assert [s["service"] for s in data["spans"]] == ["stock-keeper"]
    page = viewer_client.get(f"/consumers/{lagging.stream}/inventory/?last=15m").content.decode()
    assert "stock-keeper" in page and "from 1 recent consumer span" in page
