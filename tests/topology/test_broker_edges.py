"""RabbitMQ and Kafka systems through the real path: a running collector taps the broker and
samples its consumers; /api/topology must have exactly their nodes and edges, with routing."""
import asyncio
import contextlib
import json
import threading
import uuid

import pytest
from aiokafka.errors import KafkaError

from collector.lag import service as lag
from collector.models import Broker, LagSettings
from tests.brokers.conftest import vhost  # noqa: F401
from tests.brokers.rabbit import declare, publish, rabbit_broker
from tests.conftest import (
    RunningCollector,
    kafka_produce,
    kafka_topics,
    run_async,
    wait_until,
)
from tests.lag.test_kafka_lag import KafkaApp

pytestmark = pytest.mark.django_db(transaction=True)


async def _ack(message):
    await message.ack()


class RabbitWorkers:
    """Consumers held open in a thread of their own: [(connection name, queue)]."""

    def __init__(self, url, consumers):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.connections = asyncio.run_coroutine_threadsafe(self._start(url, consumers), self.loop).result(30)

    async def _start(self, url, consumers):
        import aio_pika

        connections = []
        for label, queue in consumers:
            connection = await aio_pika.connect(url, client_properties={"connection_name": label})
            channel = await connection.channel()
            await (await channel.get_queue(queue)).consume(_ack)
            connections.append(connection)
        return connections

    def close(self):
        async def go():
            for connection in self.connections:
                await connection.close()

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def joined(consumer):
    """Until the member has partitions and has committed on them (the sampler lists the groups
    that committed)."""
    while True:
        await consumer.getmany(timeout_ms=200)
        if consumer.assignment():
            with contextlib.suppress(KafkaError):  # a rebalance under way: again once it is done
                await consumer.commit({tp: 0 for tp in consumer.assignment()})
                return


def ours(body, x):
    nodes = {n["id"]: n for n in body["nodes"] if x in n["id"]}
    edges = {e["id"]: e for e in body["edges"] if e["source"] in nodes and e["target"] in nodes}
    return nodes, edges


def event(producer, type_):
    return json.dumps({"type": type_, "producer": producer, "body": {}}).encode()


def test_rabbitmq_exchanges_queues_and_their_services_are_edges_with_routing(vhost, run_collector,  # noqa: F811
                                                                              viewer_client):
    """order publishes to a topic exchange whose queue two invoicer instances share
    (load-balanced); alerter publishes to a fanout with a queue per service (broadcast)."""
    from collector.ingest.configuration import load_configuration

    x = uuid.uuid4().hex[:6]
    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    shop, news = f"shop_{x}", f"news_{x}"
    run_async(declare(vhost, [(shop, "topic"), (news, "fanout")],
                      [(f"billing_{x}", shop, f"order_{x}.*", None), (f"mail_{x}", news, "", None),
                       (f"page_{x}", news, "", None)]))
    broker = rabbit_broker(vhost)
    running = run_collector(brokers=[load_configuration()[0], broker], installs=[lag.install])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    workers = RabbitWorkers(vhost, [(f"invoicer_{x}", f"billing_{x}"), (f"invoicer_{x}", f"billing_{x}"),
                                    (f"mailer_{x}", f"mail_{x}"), (f"pager_{x}", f"page_{x}")])
    try:
        run_async(publish(vhost, [(shop, f"order_{x}.created", event(f"order_{x}", "order.created"), None, None)] * 3
                          + [(news, "", event(f"alerter_{x}", "alert.raised"), None, None)] * 2))
        stream = vhost.rsplit("/", 1)[1]
        group = f"group:{broker.name}/{stream}/"
        created, alerts = f"topic:order_{x}.created", f"topic:{news}"

        def graph():
            return ours(viewer_client.get("/api/topology?last=15m").json(), x)

        def complete():
            nodes, edges = graph()
            return (len([e for e in edges.values() if e["kind"] == "member"]) == 3
                    and f"consume:{created}->{group}billing_{x}" in edges
                    and nodes.get(f"{group}billing_{x}", {}).get("instances") == 2
                    and f"publish:service:alerter_{x}->{alerts}" in edges)

        wait_until(complete, 30, "the RabbitMQ system in the graph")
        nodes, edges = graph()
        assert {ident: n["sources"] for ident, n in nodes.items()} == {
            f"service:order_{x}": ["events"],
            f"service:alerter_{x}": ["events"],
            f"service:invoicer_{x}": ["consumers"],
            f"service:mailer_{x}": ["consumers"],
            f"service:pager_{x}": ["consumers"],
            created: ["consumers", "events"],
            alerts: ["consumers", "events"],
            f"{group}billing_{x}": ["consumers"],
            f"{group}mail_{x}": ["consumers"],
            f"{group}page_{x}": ["consumers"],
        }
        assert {ident: (e["kind"], e.get("routing")) for ident, e in edges.items()} == {
            f"publish:service:order_{x}->{created}": ("publish", None),
            f"publish:service:alerter_{x}->{alerts}": ("publish", None),
            f"consume:{created}->{group}billing_{x}": ("consume", "load-balanced"),
            f"consume:{alerts}->{group}mail_{x}": ("consume", "broadcast"),
            f"consume:{alerts}->{group}page_{x}": ("consume", "broadcast"),
            f"member:{group}billing_{x}->service:invoicer_{x}": ("member", None),
            f"member:{group}mail_{x}->service:mailer_{x}": ("member", None),
            f"member:{group}page_{x}->service:pager_{x}": ("member", None),
        }
        assert edges[f"publish:service:order_{x}->{created}"]["messages"] == 3
        assert edges[f"publish:service:alerter_{x}->{alerts}"]["messages"] == 2
        assert nodes[f"service:invoicer_{x}"]["instances"] == 2
        assert edges[f"consume:{alerts}->{group}mail_{x}"]["groups_on_topic"] == 2
        assert nodes[f"{group}billing_{x}"]["broker_kind"] == "rabbitmq"
    finally:
        workers.close()


def test_kafka_groups_are_partitioned_within_and_broadcast_across(kafka_bootstrap, transactional_db, settings,
                                                                  viewer_client):
    """Two members of one group share a topic's partitions by key; a second group reads every record."""
    x = uuid.uuid4().hex[:6]
    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    settings.EVENTSCOPE_CONSUMER = f"eventscope-{x}"
    topic, billing, audit = f"invoices_{x}", f"billing_{x}", f"audit_{x}"
    kafka_topics(kafka_bootstrap, {topic: 2})
    # The broker's name leaves out `x`: the shared Kafka server holds other tests' groups, whose
    # node ids carry the broker's name; only this test's topics and groups carry `x`.
    broker = Broker.objects.create(name="kafka-edges", kind="kafka", url=f"kafka://{kafka_bootstrap}")
    running = RunningCollector(installs=[lag.install], brokers=[broker])
    apps = []
    try:
        apps = [KafkaApp(kafka_bootstrap, billing, topic), KafkaApp(kafka_bootstrap, billing, topic),
                KafkaApp(kafka_bootstrap, audit, topic)]
        for app in apps:
            app.call(joined(app.consumer))
        kafka_produce(kafka_bootstrap, [(topic, f"k{i}".encode(), event(f"invoicer_{x}", "invoice.issued"), None)
                                        for i in range(4)])
        group = f"group:{broker.name}/{topic}/"
        edge_id = f"consume:topic:{topic}->{group}"

        def graph():
            return ours(viewer_client.get("/api/topology?last=15m").json(), x)

        def complete():
            nodes, edges = graph()
            return (nodes.get(f"{group}{billing}", {}).get("instances") == 2
                    and f"{edge_id}{audit}" in edges and f"publish:service:invoicer_{x}->topic:{topic}" in edges)

        wait_until(complete, 35, "the Kafka groups in the graph")
        nodes, edges = graph()
        assert {ident: n["sources"] for ident, n in nodes.items()} == {
            f"service:invoicer_{x}": ["events"],
            f"service:{billing}": ["consumers"],
            f"service:{audit}": ["consumers"],
            f"topic:{topic}": ["consumers", "events"],
            f"{group}{billing}": ["consumers"],
            f"{group}{audit}": ["consumers"],
        }
        assert {ident: (e["kind"], e.get("routing"), e.get("groups_on_topic")) for ident, e in edges.items()} == {
            f"publish:service:invoicer_{x}->topic:{topic}": ("publish", None, None),
            f"{edge_id}{billing}": ("consume", "partitioned", 2),
            f"{edge_id}{audit}": ("consume", "partitioned", 2),
            f"member:{group}{billing}->service:{billing}": ("member", None, None),
            f"member:{group}{audit}->service:{audit}": ("member", None, None),
        }
        assert edges[f"publish:service:invoicer_{x}->topic:{topic}"]["messages"] == 4
        assert nodes[f"service:{billing}"]["instances"] == 2 and nodes[f"{group}{billing}"]["broker_kind"] == "kafka"
    finally:
        for app in apps:
            app.stop()
        running.stop()
