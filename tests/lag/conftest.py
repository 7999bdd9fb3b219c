"""Fixtures of the lag tests: a running collector with the lag sampler (one-second
interval), real streams and consumers, and a worker that pulls at the pace a test sets."""
import asyncio
import threading
import uuid

import nats
import pytest
from nats.js import api

from collector.deadletters import capture
from collector.lag import service as lag
from collector.models import Consumer, LagSample, LagSettings
from tests.conftest import RunningCollector, run_async, wait_until
from tests.traces.test_traces_ingest import span_collector  # noqa: F401 (span receivers, a fixture)


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


@pytest.fixture
def fast_sampling(transactional_db):
    LagSettings.objects.update_or_create(pk=1, defaults={"interval_seconds": 1})


@pytest.fixture
def lag_collector(fast_sampling):
    """A running collector with the lag sampler and dead-letter capture, as `manage.py collect` has them."""
    running = RunningCollector(installs=[capture.install, lag.install])
    yield running
    running.stop()


def js(url, work):
    """Run `await work(js, nc)` on a fresh connection."""

    async def go():
        nc = await nats.connect(url)
        try:
            return await work(nc.jetstream(), nc)
        finally:
            await nc.close()

    return run_async(go())


def make_stream(url, name, subjects, **config):
    return js(url, lambda j, nc: j.add_stream(api.StreamConfig(name=name, subjects=subjects, **config)))


def add_pull_consumer(url, stream, durable, filter_subject=None, **config):
    consumer = api.ConsumerConfig(durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, filter_subject=filter_subject,
                                  **config)
    return js(url, lambda j, nc: j.add_consumer(stream, consumer))


def publish(url, subject, count, data=b"{}"):
    async def work(j, nc):
        return [await j.publish(subject, data) for _ in range(count)]

    return js(url, work)


class Puller:
    """A service that pulls from a durable consumer in its own thread: `batch` messages per
    `every` seconds, acked (or left alone while `paused`)."""

    def __init__(self, url, stream, durable, subject, batch=10, every=0.2):
        self.url, self.stream, self.durable, self.subject = url, stream, durable, subject
        self.batch, self.every = batch, every
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.acked = 0
        self.thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self.thread.start()

    async def _run(self):
        nc = await nats.connect(self.url)
        sub = await nc.jetstream().pull_subscribe_bind(self.durable, self.stream)
        while not self.stop.is_set():
            if self.paused.is_set():
                await asyncio.sleep(0.05)
                continue
            try:
                for msg in await sub.fetch(self.batch, timeout=0.3):
                    await msg.ack_sync()
                    self.acked += 1
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(self.every)
        await nc.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)


def consumer_row(stream, name, timeout=40):
    # A round covers every consumer the whole test run left on the shared server; on a loaded
    # machine the first rounds of a new collector take several seconds each.
    return wait_until(lambda: Consumer.objects.filter(stream=stream, name=name).first(), timeout,
                      f"consumer {stream}/{name} sampled")


def samples(consumer):
    return list(LagSample.objects.filter(consumer_id=consumer.id).order_by("at"))
