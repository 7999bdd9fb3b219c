"""The demo's traffic, as the collector stores it: every page has something true to show."""
import pytest
from django.core.management import call_command

from collector.models import Event, EventRollup, Topic
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
DEMO_STREAMS = ["ORDERS", "PAYMENTS", "EMAIL", "SERVICES", "DLQ", "shipments"]


def test_a_bounded_demo_run_fills_the_store_with_topics_producers_versions_dead_letters_and_traces(
        run_collector, capsys):
    """Without a namespace, as `./eventscope up` runs it (its streams must suit the server)."""
    from collector.deadletters import capture
    from collector.topology import service as topology

    running = run_collector(installs=[capture.install, topology.install])
    call_command("demo", count=20, rate=100, fail_fraction=0.5, max_deliver=2,
                 retry_delay=0.05, slow_delay=0.01, initial_stock=1, wave_period=0, drain_timeout=20,
                 exporters="none")
    assert '"orders": 20' in capsys.readouterr().out
    created = "order.created"
    wait_until(lambda: Event.objects.filter(subject=created).count() == 20, 30, "20 orders stored")
    topics = set(Topic.objects.values_list("name", flat=True))
    assert {created, "payment.succeeded", "payment.failed", "email.requested", "service.events"} <= topics
    versions = set(EventRollup.objects.filter(subject=created).values_list("version", flat=True))
    assert versions == {"1", "2"}
    producers = set(EventRollup.objects.filter(subject__in=topics).values_list("producer", flat=True))
    assert {"order", "payment", "notification"} <= producers
    formats = set(Event.objects.filter(stream__in=DEMO_STREAMS).values_list("format", flat=True))
    assert {"envelope", "cloudevents", "cloudevents-binary", "gomicro-event", "gomicro-broker"} <= formats
    wait_until(lambda: Event.objects.filter(stream__in=DEMO_STREAMS, subject__endswith=".dlq").exists(), 30,
               "a message on a .dlq subject")
    dlq = Event.objects.filter(stream__in=DEMO_STREAMS, subject__endswith=".dlq").first()
    assert dlq.headers.get("X-Error") and dlq.headers.get("X-Original-Topic")
    # Both dead-letter paths: JetStream gave up on failing payments; the mailer used a DLQ subject.
    from collector.models import DeadLetter

    wait_until(lambda: DeadLetter.objects.filter(reason="max_deliveries", stream="ORDERS").exists(), 30,
               "payments that ran out of deliveries")
    dlq = DeadLetter.objects.filter(reason="dlq_subject", dlq_subject="email.requested.dlq").first()
    assert dlq is not None and dlq.subject == "email.requested" and dlq.error
    untraced = Event.objects.filter(stream__in=DEMO_STREAMS, trace_id__isnull=True).exclude(
        subject="service.events")
    assert not untraced.exists()
    # Each instance registered on service.events (name, version, node) and deregistered when the run ended.
    from collector.models import ServiceInstance

    wait_until(lambda: ServiceInstance.objects.filter(service="order", deregistered__isnull=False).count() == 4, 30,
               "the four order instances registered and gone")
    orders = ServiceInstance.objects.filter(service="order")
    assert len({row.node for row in orders}) == 4 and len({row.version for row in orders}) == 2
    assert {"payment", "notification"} <= set(ServiceInstance.objects.values_list("service", flat=True))
    running.stop()
