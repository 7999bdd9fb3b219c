"""Reconciliation against a real JetStream: every message on a consumer's subjects is
accounted for, term by term, from the broker's numbers, the store and the dead-letter store."""
import asyncio

import nats
import pytest
from nats.js import api

from collector.lag.reconcile import account
from collector.models import Consumer, DeadLetter, Event, LagSample
from tests.conftest import run_async, wait_until
from tests.lag.conftest import consumer_row, make_stream, unique

pytestmark = pytest.mark.django_db(transaction=True)


def latest_read_sample(consumer, after=None):
    found = LagSample.objects.filter(consumer_id=consumer.id, state="read")
    if after is not None:
        found = found.filter(at__gt=after)
    return found.order_by("-at").first()


def settled(consumer, stored, **expected):
    """A read sample with the figures expected, taken once the store holds `stored` events."""
    def check():
        sample = latest_read_sample(consumer)
        if Event.objects.filter(stream=consumer.stream).count() < stored or sample is None:
            return None
        if all(getattr(sample, key) == value for key, value in expected.items()):
            return sample
        return None

    return wait_until(check, 20, f"a sample with {expected}")


def test_a_consumer_that_acks_some_naks_some_to_max_deliveries_and_never_pulls_others_adds_up_term_by_term(
        lag_collector, nats_url):
    stream = unique("REC")
    orders, other = f"{stream.lower()}.orders", f"{stream.lower()}.other"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    lag_collector.wait_until_observing(stream)

    async def connect():
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        sub = await js.pull_subscribe(orders, durable="billing", stream=stream,
                                      config=api.ConsumerConfig(max_deliver=2, ack_wait=30))
        return nc, js, sub

    async def first_part():
        nc, js, sub = await connect()
        for _ in range(7):  # other subjects share the stream's sequences
            await js.publish(orders, b"{}")
            await js.publish(other, b"{}")
        batch = await sub.fetch(7, timeout=2)
        for msg in batch[:4]:
            await msg.ack_sync()
        for msg in batch[4:]:
            await msg.nak()
        again = []
        for _ in range(5):  # the naked messages come back one by one, not always in one fetch
            again += await sub.fetch(3 - len(again), timeout=2)
            if len(again) == 3:
                break
        assert [m.metadata.num_delivered for m in again] == [2, 2, 2]
        for msg in again:
            await msg.nak()
        await nc.flush()
        await nc.close()

    run_async(first_part())
    consumer = consumer_row(stream, "billing")
    # The trap: no pull since the last nak, so no advisory yet: the three are still "delivered
    # and unacknowledged", not dead, and the account adds up all the same.
    sample = settled(consumer, 14, pending=0, ack_pending=3)
    before = account(Consumer.objects.get(pk=consumer.pk), sample)
    assert before.complete, before.note
    assert (before.total, before.terms) == (7, {"pending": 0, "ack_pending": 3, "dead": 0, "acked": 4, "removed": 0})

    async def second_part():
        nc, js, sub = await connect()
        try:
            await sub.fetch(1, timeout=1)  # the next pull: JetStream gives up on the three
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            pass
        for _ in range(3):  # never pulled
            await js.publish(orders, b"{}")
        await js.publish(other, b"{}")
        await nc.close()

    run_async(second_part())
    wait_until(lambda: DeadLetter.objects.filter(stream=stream, consumer="billing").count() == 3, 20, "3 dead letters")
    sample = settled(consumer, 18, pending=3, ack_pending=0)
    after = account(Consumer.objects.get(pk=consumer.pk), sample)
    assert after.complete, after.note
    assert after.total == 10
    assert after.terms == {"pending": 3, "ack_pending": 0, "dead": 3, "acked": 4, "removed": 0}
    assert sum(after.terms.values()) == after.total


def test_a_store_that_misses_part_of_the_span_says_by_how_much_instead_of_adding_up(
        fast_sampling, run_collector, nats_url):
    """Messages the stream's limits removed before Eventscope started are missing from the
    store: the account names how many, and is not complete."""
    from collector.deadletters import capture
    from collector.lag import service as lag

    stream = unique("RECM")
    subject = f"{stream.lower()}.orders"

    async def go():
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name=stream, subjects=[subject], max_msgs=5))
        for _ in range(12):  # only the last 5 are left when Eventscope starts
            await js.publish(subject, b"{}")
        await js.add_consumer(stream, api.ConsumerConfig(durable_name="late", ack_policy=api.AckPolicy.EXPLICIT))
        await nc.close()

    run_async(go())
    run_collector(installs=[capture.install, lag.install])
    consumer = consumer_row(stream, "late")
    sample = settled(consumer, 5, pending=5)
    result = account(Consumer.objects.get(pk=consumer.pk), sample)
    assert not result.complete
    assert result.missing == 7 and "lacks 7 of the stream's 12 messages" in result.note
