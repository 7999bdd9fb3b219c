"""The demo's traffic, as the collector stores it: every page has something true to show."""
import uuid

import pytest
from django.core.management import call_command

from collector.models import Event, EventRollup, Topic
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def test_a_bounded_demo_run_fills_the_store_with_topics_producers_versions_dead_letters_and_traces(
        run_collector, capsys):
    namespace = "d" + uuid.uuid4().hex[:6]
    running = run_collector()
    call_command("demo", namespace=namespace, count=20, rate=100, fail_fraction=0.5, max_deliver=2,
                 retry_delay=0.05, slow_delay=0.01, initial_stock=1, wave_period=0, drain_timeout=20,
                 exporters="none")
    assert '"orders": 20' in capsys.readouterr().out
    created = f"{namespace}.order.created"
    wait_until(lambda: Event.objects.filter(subject=created).count() == 20, 30, "20 orders stored")
    topics = set(Topic.objects.filter(name__startswith=namespace).values_list("name", flat=True))
    assert {created, f"{namespace}.payment.succeeded", f"{namespace}.payment.failed",
            f"{namespace}.email.requested", f"{namespace}.service.events"} <= topics
    versions = set(EventRollup.objects.filter(subject=created).values_list("version", flat=True))
    assert versions == {"1", "2"}
    producers = set(EventRollup.objects.filter(subject__startswith=namespace).values_list("producer", flat=True))
    assert {"order", "payment", "notification"} <= producers
    formats = set(Event.objects.filter(subject__startswith=namespace).values_list("format", flat=True))
    assert {"envelope", "cloudevents", "cloudevents-binary", "gomicro-event", "gomicro-broker"} <= formats
    wait_until(lambda: Event.objects.filter(subject__startswith=namespace, subject__endswith=".dlq").exists(), 30,
               "a message on a .dlq subject")
    dlq = Event.objects.filter(subject__startswith=namespace, subject__endswith=".dlq").first()
    assert dlq.headers.get("X-Error") and dlq.headers.get("X-Original-Topic")
    untraced = Event.objects.filter(subject__startswith=namespace, trace_id__isnull=True).exclude(
        subject=f"{namespace}.service.events")
    assert not untraced.exists()
    running.stop()
