"""The span pass: each span counts once however often and from however many collectors it
runs, and a client/server pair counts once whichever of its spans arrives first."""
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections

from collector.models import TopologyEdgeRollup
from collector.partitions import midnight, partition_name
from collector.topology import writer

pytestmark = pytest.mark.django_db(transaction=True)


def store_span(trace, span, service, kind, received, parent=None, destination=None, group=None, error=False):
    start = datetime.now(UTC) - timedelta(minutes=2)
    day = start.date()
    tags = json.dumps({"messaging.consumer.group.name": group} if group else {})
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {partition_name('collector_span', day)} PARTITION OF collector_span "
                       f"FOR VALUES FROM ('{midnight(day).isoformat()}') TO ('{(midnight(day) + timedelta(days=1)).isoformat()}')")
        cursor.execute(
            "INSERT INTO collector_span (trace_id, span_id, parent_span_id, service, operation, kind, start, duration_us, "
            "error, tags, destination, received_at) VALUES (%s, %s, %s, %s, 'op', %s, %s, 1500, %s, %s::jsonb, %s, %s)",
            [trace, span, parent, service, kind, start, error, tags, destination, received])


def catch_up():
    """Passes until the cursor is within a millisecond of now (a pass reads at most five minutes)."""
    while not writer.span_pass(settle=timedelta(seconds=0.001))[1]:
        pass


def edges():
    return {(e.kind, e.source, e.target, e.group): (e.count, e.errors)
            for e in TopologyEdgeRollup.objects.filter(width=1)}


def test_a_pair_counts_once_whichever_span_arrives_first_and_a_second_pass_adds_nothing():
    catch_up()  # the cursor starts before these spans
    now = datetime.now(UTC)
    # Trace a: the client span first; trace b: the server span first, its parent a pass later.
    store_span("a", "1", "gateway", "client", now)
    store_span("a", "2", "order", "server", now, parent="1", error=True)
    store_span("b", "2", "order", "server", now, parent="1")
    store_span("c", "1", "order", "producer", now, destination="orders")
    store_span("c", "2", "shipper", "consumer", now, parent="1", destination="orders", group="shipping")
    catch_up()
    later = datetime.now(UTC)
    store_span("b", "1", "gateway", "client", later)
    catch_up()
    catch_up()
    assert edges() == {
        ("call", "gateway", "order", ""): (2, 1),
        ("publish", "order", "orders", ""): (1, 0),
        ("consume", "orders", "shipper", "shipping"): (1, 0),  # a producer/consumer pair is no call
    }


def test_two_collectors_passing_at_once_count_each_span_once():
    catch_up()
    now = datetime.now(UTC)
    for n in range(200):
        store_span(f"t{n}", "1", "order", "producer", now, destination="orders")
    errors = []

    def run():
        try:
            for _ in range(3):
                catch_up()
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert edges() == {("publish", "order", "orders", ""): (200, 0)}
    # The 5-minute and hourly rows say the same.
    assert sorted(TopologyEdgeRollup.objects.values_list("width", "count")) == [(1, 200), (5, 200), (15, 200), (60, 200)]
