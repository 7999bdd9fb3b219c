"""Fixtures and helpers of the dead-letter tests: a running collector with capture installed,
a real stream with a consumer that gives up, and stored dead letters."""
import asyncio
import threading
import uuid

import nats
import pytest
from django.utils import timezone
from nats.js import api

from collector.deadletters import capture
from collector.deadletters.capture import store_letters
from collector.models import Broker, DeadLetter
from tests.conftest import RunningCollector, nats_publish, run_async


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


@pytest.fixture
def collector(transactional_db):
    """A running collector with dead-letter capture installed, as `manage.py collect` has it."""
    running = RunningCollector(installs=[capture.install])
    yield running
    running.stop()


@pytest.fixture
def eager_tasks():
    """Celery tasks run eagerly, in the calling thread, so a test sees their effect at once:
    for unit tests only (no queue, no worker process, no redelivery)."""
    from dashboard.celery import app

    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


@pytest.fixture
def broker(transactional_db, nats_url):
    return Broker.objects.update_or_create(name="nats", defaults={"url": nats_url, "kind": "nats"})[0]


def failing_consumer(url, stream, subject, durable, max_deliver=2, how="nak", until=None):
    """A service that fails every message (nak until max deliveries, or term) until `until` is set;
    then it acks. Runs in a thread until `stop` is set; returns (thread, stop)."""
    stop = threading.Event()

    async def serve():
        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream,
                                      config=api.ConsumerConfig(max_deliver=max_deliver, ack_wait=2))
        while not stop.is_set():
            try:
                msgs = await sub.fetch(10, timeout=0.3)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            for msg in msgs:
                if until is not None and until.is_set():
                    await msg.ack()
                elif how == "term":
                    await msg.term()
                else:
                    await msg.nak()
        await nc.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    return thread, stop


def stream_messages(url, stream):
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)
                 if info.state.messages]
        await nc.close()
        return found

    return run_async(go())


def make_stream(url, stream, subjects, **config):
    """A JetStream stream; `config` as nats-py's StreamConfig takes it (duplicate_window in
    seconds, retention, no_ack ...)."""
    if not config:
        nats_publish(url, [], stream=stream, subjects=subjects)
        return

    async def go():
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(api.StreamConfig(name=stream, subjects=subjects, **config))
        await nc.close()

    run_async(go())


def stream_state(url, stream):
    """The stream's state (messages, first_seq, last_seq ...)."""
    async def go():
        nc = await nats.connect(url)
        info = await nc.jetstream().stream_info(stream)
        await nc.close()
        return info.state

    return run_async(go())


def letter(broker, subject, raw=b'{"order": 1}', headers=None, **fields):
    """A stored dead letter, through the capture's own writer."""
    now = timezone.now()
    fields.setdefault("key", f"test:{uuid.uuid4()}")
    fields.setdefault("first_seen", now)
    fields.setdefault("reason", DeadLetter.Reason.MAX_DELIVERIES)
    found = DeadLetter(broker=broker, subject=subject, raw=raw, headers=headers or {"X-Customer": "7"},
                       last_seen=fields["first_seen"], size=len(raw or b""), **fields)
    return store_letters([found])[0]
