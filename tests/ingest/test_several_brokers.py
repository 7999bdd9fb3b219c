"""The collector runs one adapter per broker: a broker that cannot be reached never holds
back the others, and each row carries the broker it came from."""
import socket

import pytest

from collector.models import Broker, Event
from tests.conftest import nats_publish, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_broker_that_is_down_never_holds_back_the_others(run_collector, nats_url):
    from collector.ingest.configuration import load_configuration

    nats = load_configuration()[0]
    down = Broker.objects.create(name="rabbit-down", kind="rabbitmq", url=f"amqp://guest:guest@127.0.0.1:{closed_port()}/")
    running = run_collector(brokers=[nats, down])
    assert running.collector.broker == nats and not running.collector.taps.ready["rabbit-down"]
    nats_publish(nats_url, [("several.brokers.check", b"{}", None)])
    stored = wait_until(lambda: Event.objects.filter(subject="several.brokers.check").first(), 20, "the NATS message")
    assert stored.broker_id == nats.id
    assert not running.collector.taps.ready["rabbit-down"]
