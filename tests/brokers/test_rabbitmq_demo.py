"""The demo's mail over RabbitMQ, tapped by the collector: events from both brokers, bounced
mail captured from the dead-letter exchange, and the queues' topology data (a queue shared
by two mailers is load-balanced, one exclusive queue per auditor on a fanout is broadcast)."""
import asyncio
import threading
import uuid

import pytest

import demo
from collector.deadletters import capture
from collector.lag import service as lag
from collector.models import Consumer, DeadLetter, Event, LagSettings
from demo import rabbit as rabbit_demo
from tests.brokers.rabbit import rabbit_broker
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_mail_runs_over_rabbitmq_with_dead_letters_and_routing_modes(vhost, run_collector,
                                                                               nats_url):
    from collector.ingest.configuration import load_configuration

    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})
    namespace = f"t{uuid.uuid4().hex[:8]}"
    # In place before the collector starts, as a dead-letter exchange is in a real system: a
    # bounce dead-lettered before the tap is bound to its exchange is not seen by it.
    asyncio.run(rabbit_demo.declare(vhost, namespace))
    broker = rabbit_broker(vhost)
    nats = load_configuration()[0]
    running = run_collector(brokers=[nats, broker], installs=[capture.install, lag.install])
    wait_until(lambda: running.collector.taps.ready.get(broker.name), 30, "the RabbitMQ tap")
    shop = RunningShop(demo.DemoConfig(
        nats_url=nats_url, rabbitmq_url=vhost, rate=10, fail_fraction=0.4, exporters=(), namespace=namespace,
        wave_period=0, slow_delay=0.01, retry_delay=0.1, drain_timeout=10))
    try:
        # While it runs: the queues' topology data, as the topology graph reads it.
        mailer = wait_until(lambda: Consumer.objects.filter(broker=broker, name=f"{namespace}.mailer",
                                                            config__instances=2).first(), 40, "the mailer queue sampled")
        assert mailer.config["routing"] == "load-balanced" and mailer.config["group"] == "mailer-amqp"
        assert mailer.config["topics"] == ["email.requested"]
        audits = Consumer.objects.filter(broker=broker, config__group="audit", config__instances=1)
        wait_until(lambda: audits.count() == 2, 20, "both auditors' queues sampled")
        assert {c.config["routing"] for c in audits} == {"broadcast"}
        assert {tuple(c.config["topics"]) for c in audits} == {(f"{namespace}.shop.broadcast",)}
    finally:
        stats = shop.stop()
    assert stats.rabbitmq["relayed"] > 0 and stats.rabbitmq["bounced"] > 0 and stats.rabbitmq["audited"] > 0
    mail = Event.objects.filter(broker=broker, subject="email.requested", stream=f"{namespace}.shop.mail")
    relayed, unsure = stats.rabbitmq["relayed"], stats.rabbitmq.get("relay_errors", 0)
    wait_until(lambda: mail.count() >= relayed, 30, f"every relayed mail stored ({relayed})")
    # A publish cut short by the shop's stop may have reached the broker without its confirm: it
    # is stored but not counted as relayed. Nothing else is stored, and nothing twice.
    assert mail.count() <= relayed + unsure
    assert mail.values("seq").distinct().count() == mail.count()
    assert Event.objects.filter(broker=nats, subject=f"{namespace}.email.requested").exists()
    wait_until(lambda: DeadLetter.objects.filter(broker=broker).count() == stats.rabbitmq["bounced"], 30,
               "every bounce captured")
    assert set(DeadLetter.objects.filter(broker=broker).values_list("reason", "consumer")) == {
        ("rejected", f"{namespace}.mailer")}


class RunningShop:
    """The demo shop in a thread of its own until stopped."""

    def __init__(self, config):
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.result = None

        def run():
            asyncio.set_event_loop(self.loop)
            self.result = self.loop.run_until_complete(demo.run(config, self.stop_event))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        return self.result
