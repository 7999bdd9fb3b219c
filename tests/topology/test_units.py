"""Unit tests of the pure parts: registrations, the consume-edge contract for any broker
kind, namespaces."""
from datetime import UTC

import pytest

from collector.topology.consumers import group_of, routing_of
from collector.topology.readers import namespace
from collector.topology.registrations import BadRegistration, parse


def test_unit_a_go_micro_registry_result_gives_one_registration_per_node():
    found = parse({"action": "create", "service": {"name": "go.micro.srv.order", "version": "1.4.0",
                                                   "nodes": [{"id": "order-1", "address": "10.0.0.1:9000"},
                                                             {"id": "order-2"}]}})
    assert [(r.service, r.version, r.node, r.address, r.gone) for r in found] == [
        ("go.micro.srv.order", "1.4.0", "order-1", "10.0.0.1:9000", False),
        ("go.micro.srv.order", "1.4.0", "order-2", "", False)]


def test_unit_a_flat_announcement_read_from_raw_bytes_and_a_deregistration():
    [one] = parse(None, b'{"name": "mailer", "version": "2", "instances": 3}')
    assert (one.service, one.instances, one.gone) == ("mailer", 3, False)
    [gone] = parse({"type": "service.deregister", "name": "mailer", "node": "m-1"})
    assert gone.gone and gone.node == "m-1"


@pytest.mark.parametrize("payload, raw, reason", [
    (None, b"\xff", "not a JSON object"), (None, b"[1]", "not a JSON object"), ({"version": "1"}, None, "no service name"),
    ({"name": "x", "instances": -1}, None, "instances"), ({"name": "x", "nodes": ["a"]}, None, "nodes")])
def test_unit_a_message_that_is_no_registration_says_why(payload, raw, reason):
    with pytest.raises(BadRegistration, match=reason):
        parse(payload, raw)


def consumer(kind, config, **extra):
    return {"broker": "main", "kind": kind, "stream": extra.pop("stream", "ORDERS"), "name": extra.pop("name", "payment"),
            "config": config, "lag": 4, "status": "ok", "waiting": extra.pop("waiting", 0), "gone": False}


def test_unit_jetstream_topics_come_from_filters_over_the_streams_subjects_or_all_of_them():
    topics = ["orders.created", "orders.paid", "orders.v2.created"]
    group = group_of(consumer("jetstream", {"filter_subjects": ["orders.*", "orders.refunded"], "durable": "payment"}),
                     topics)
    assert group.topics == ["orders.created", "orders.paid", "orders.refunded"]
    assert group.service == "payment" and group.routing is None
    assert group_of(consumer("jetstream", {"filter_subjects": []}), topics).topics == topics


def test_unit_a_queue_group_or_several_pull_clients_share_the_work():
    queue = group_of(consumer("jetstream", {"deliver_group": "payments", "durable": "payment"}), [])
    assert (queue.service, queue.routing) == ("payments", "load-balanced")
    pulled = group_of(consumer("jetstream", {"pull": True}, waiting=2), [])
    assert (pulled.instances, pulled.routing) == (2, "load-balanced")
    single = group_of(consumer("jetstream", {"pull": True}, waiting=1), [])
    assert routing_of(single, 1) == "single" and routing_of(single, 2) == "broadcast"


def test_unit_other_brokers_fill_the_contract_topics_instances_group_routing():
    rabbit = group_of(consumer("rabbitmq", {"topics": ["orders.created"], "instances": 3, "group": "billing"},
                               stream="/", name="billing.orders"), ["ignored"])
    assert (rabbit.topics, rabbit.instances, rabbit.service, rabbit.routing) == (
        ["orders.created"], 3, "billing", "load-balanced")
    assert rabbit.id == "group:main///billing.orders"
    kafka = group_of(consumer("kafka", {"topics": ["orders"], "instances": 1, "routing": "broadcast"},
                              stream="orders", name="audit"), [])
    assert (kafka.service, kafka.routing) == ("audit", "broadcast")
    # Kafka's sampler says `partitioned`: kept with two members and with two groups on the topic.
    members = group_of(consumer("kafka", {"topics": ["orders"], "instances": 2, "group": "billing",
                                          "routing": "partitioned"}, stream="orders", name="billing"), [])
    assert (members.instances, routing_of(members, 2), routing_of(members, 1)) == (2, "partitioned", "partitioned")


def test_unit_namespaces_are_the_name_before_its_last_dot_or_the_admins_pattern():
    assert namespace("go.micro.srv.order") == "go.micro.srv"
    assert namespace("order") == "order"
    assert namespace("team-billing-invoice", r"^team-(\w+)-") == "billing"
    assert namespace("plain", r"^team-(\w+)-") == "plain"


def test_unit_a_window_reads_whole_hours_quarters_5_minute_blocks_and_minutes_only_at_its_ends():
    from datetime import datetime

    from collector.topology.sources import pieces

    t = lambda h, m, s=0: datetime(2026, 11, 30, h, m, s, tzinfo=UTC)
    assert pieces(t(10, 23, 40), t(12, 41)) == [
        (1, t(10, 23), t(10, 25)), (5, t(10, 25), t(10, 30)), (15, t(10, 30), t(11, 0)), (60, t(11, 0), t(12, 0)),
        (15, t(12, 0), t(12, 30)), (5, t(12, 30), t(12, 40)), (1, t(12, 40), t(12, 41))]
    assert pieces(t(10, 1), t(10, 4)) == [(1, t(10, 1), t(10, 4))]
    assert pieces(t(10, 4), t(10, 4)) == []
    covered = sum((hi - lo).total_seconds() for _, lo, hi in pieces(t(9, 59), t(13, 7, 30)))
    assert covered == (t(13, 7, 30) - t(9, 59)).total_seconds()


def test_unit_the_edge_p95_is_the_traces_percentile():
    from collector.models.traces import DURATION_BUCKETS_US
    from collector.topology.readers import p95
    from collector.traces.readers import percentile

    size = len(DURATION_BUCKETS_US) + 1
    for histogram in ([0] * size, [1] + [0] * (size - 1), [0] * (size - 1) + [7], list(range(size)), [40, 15, 5] + [0] * (size - 3)):
        assert p95(histogram) == percentile(histogram, 0.95)
