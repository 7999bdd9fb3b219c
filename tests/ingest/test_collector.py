"""The collector stores every message on the bus once, decoded where it can be."""
import asyncio
import base64
import json
import uuid

import nats
from nats.js import api

from collector.models import Event, EventRollup, Topic
from tests.conftest import nats_publish, wait_until


def set_payload_cap(size):
    from collector.models import RuntimeSettings

    settings = RuntimeSettings.load()
    settings.max_payload_bytes = size
    settings.save()


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def gomicro_event(topic, payload, **metadata):
    return json.dumps({
        "ID": str(uuid.uuid4()), "Topic": topic, "Timestamp": "2026-11-27T10:00:00.123456789Z",
        "Metadata": metadata, "Payload": base64.b64encode(json.dumps(payload).encode()).decode(),
    }).encode()


def test_stream_messages_are_stored_decoded_with_rollup_and_topic(run_collector, nats_url):
    stream, subject = unique("ORD"), None
    subject = f"{stream.lower()}.created"
    running = run_collector()
    envelope = json.dumps({"type": "order.created", "version": "2", "timestamp": "2026-11-27T10:00:00Z",
                           "body": {"id": 1}}).encode()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    nats_publish(nats_url, [(subject, envelope, {"traceparent": traceparent, "Micro-From-Service": "order"})] * 3
                 + [(subject, gomicro_event(subject, {"id": 2}), None)],
                 stream=stream, subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 4, what="4 events")
    first = Event.objects.filter(stream=stream).order_by("seq").first()
    assert (first.subject, first.seq, first.format, first.type, first.version) == (
        subject, 1, "envelope", "order.created", "2")
    assert first.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert first.span_id == "b7ad6b7169203331"
    assert first.payload == {"id": 1}  # an envelope's payload is its body
    assert bytes(first.raw) == envelope and first.size == len(envelope)
    assert first.headers["traceparent"] == traceparent
    gomicro = Event.objects.get(stream=stream, seq=4)
    assert gomicro.format == "gomicro-event" and gomicro.payload == {"id": 2}
    counts = {(r.type, r.version): r.count for r in EventRollup.objects.filter(subject=subject)}
    assert counts[("order.created", "2")] == 3
    assert sum(counts.values()) == 4
    topic = Topic.objects.get(name=subject)
    assert topic.stream == stream and topic.best_effort is False
    running.stop()


def test_core_subjects_are_stored_best_effort_and_stream_subjects_only_once(run_collector, nats_url):
    stream = unique("DUP")
    core_subject = unique("core.") + ".ping"
    running = run_collector()
    nats_publish(nats_url, [(f"{stream.lower()}.x", b'{"a":1}', None)], stream=stream, subjects=[f"{stream.lower()}.>"])
    running.wait_until_observing(stream)
    nats_publish(nats_url, [(f"{stream.lower()}.x", b'{"a":2}', None)], stream=stream, subjects=[f"{stream.lower()}.>"])
    nats_publish(nats_url, [(core_subject, b"hello", {"k": "v"})])
    wait_until(lambda: Event.objects.filter(subject=core_subject).exists(), what="core event")
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 2, what="stream events")
    core = Event.objects.get(subject=core_subject)
    assert core.stream == "" and core.best_effort
    assert Topic.objects.get(name=core_subject).best_effort is True
    # The core tap also saw the stream publishes: none of them is stored a second time.
    assert Event.objects.filter(subject=f"{stream.lower()}.x").count() == 2
    running.stop()


def test_a_workqueue_stream_is_captured_from_the_core_tap_without_stealing_messages(run_collector, nats_url):
    stream = unique("WQ")
    subject = f"{stream.lower()}.job"
    nats_publish(nats_url, [], stream=stream, subjects=[f"{stream.lower()}.>"], retention=api.RetentionPolicy.WORK_QUEUE)
    running = run_collector()
    running.wait_until_observing(stream)
    state = running.collector.adapter.streams[stream]
    assert state.observed is False and "WorkQueue" in state.note

    async def consume():
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, durable="worker", stream=stream)
        for n in range(5):
            await js.publish(subject, f"job {n}".encode())
        got = []
        while len(got) < 5:
            for msg in await sub.fetch(5, timeout=5):
                got.append(msg.data)
                await msg.ack()
        consumers = [c.name for c in await nc.jsm().consumers_info(stream)]
        await nc.close()
        return got, consumers

    got, consumers = asyncio.run(consume())
    assert len(got) == 5
    assert consumers == ["worker"]
    wait_until(lambda: Event.objects.filter(subject=subject).count() == 5, what="5 tapped jobs")
    assert set(Event.objects.filter(subject=subject).values_list("stream", flat=True)) == {""}
    running.collector.write_heartbeat()
    from collector.events.readers import stream_notes

    assert (stream, "WorkQueue stream: captured from the core tap (best effort)") in stream_notes()
    running.stop()


def test_on_an_interest_stream_the_observer_acks_so_it_holds_nothing_back(run_collector, nats_url):
    stream = unique("INT")
    subject = f"{stream.lower()}.evt"
    nats_publish(nats_url, [], stream=stream, subjects=[f"{stream.lower()}.>"], retention=api.RetentionPolicy.INTEREST)
    running = run_collector()
    running.wait_until_observing(stream)
    nats_publish(nats_url, [(subject, b"1", None), (subject, b"2", None)], stream=stream, subjects=[f"{stream.lower()}.>"],
                 retention=api.RetentionPolicy.INTEREST)
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 2, what="2 events")

    async def remaining():
        nc = await nats.connect(nats_url)
        info = await nc.jetstream().stream_info(stream)
        await nc.close()
        return info.state.messages

    # Eventscope's observer is the only interest: once it acked, the stream drops them.
    wait_until(lambda: asyncio.run(remaining()) == 0, what="interest stream emptied")
    running.stop()


def test_storing_the_same_messages_twice_is_a_no_op(run_collector, nats_url):
    from datetime import datetime, timezone

    from collector.brokers.nats import RawMessage

    running = run_collector()
    collector = running.collector
    now = datetime.now(timezone.utc)
    batch = [RawMessage("replay.subject", "REPLAY", seq, now, now, None, b'{"n": %d}' % seq) for seq in range(1, 101)]

    async def twice():
        first = await collector.store_batch(batch)
        second = await collector.store_batch(batch)
        return first, second

    future = asyncio.run_coroutine_threadsafe(twice(), running.loop)
    assert future.result(30) == (100, 0)
    assert Event.objects.filter(stream="REPLAY").count() == 100
    assert sum(EventRollup.objects.filter(subject="replay.subject").values_list("count", flat=True)) == 100
    running.stop()


BAD_INPUTS = {
    "invalid json": b'{"a": ',
    "invalid utf-8": b"\xff\xfe\xfa not text",
    "binary": bytes(range(256)),
    "one megabyte": b'{"big": "' + b"x" * 1_000_000 + b'"}',  # NATS refuses more than 1 MiB
    "deep json": b"[" * 10000 + b"]" * 10000,
    "wrong field types": b'{"ID": 5, "Topic": [], "Timestamp": {}, "Metadata": "x", "Payload": 7}',
    "payload not base64": b'{"ID": "1", "Topic": "t", "Timestamp": "2026-01-01T00:00:00Z", "Metadata": {}, "Payload": "%%%not base64%%%"}',
    "empty": b"",
    "nul in json": b'{"a": "\\u0000"}',
}


def test_bad_input_is_stored_with_its_raw_bytes_and_a_note_and_the_rest_keeps_flowing(run_collector, nats_url):
    stream = unique("BAD")
    subject = f"{stream.lower()}.in"
    set_payload_cap(2 * 1024 * 1024)
    running = run_collector()
    messages = [(subject, data, {"case": name, "ctl": "tab\there\x01\x7f"}) for name, data in BAD_INPUTS.items()]
    messages.append((subject, b'{"fine": true}', {"case": "good"}))
    nats_publish(nats_url, messages, stream=stream, subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(stream=stream).count() == len(messages), what="all bad inputs stored")
    for event in Event.objects.filter(stream=stream):
        case = event.headers["case"]
        if case == "good":
            assert event.note is None and event.payload == {"fine": True}
            continue
        assert bytes(event.raw) == BAD_INPUTS[case], case
        if case == "one megabyte":
            assert event.size > 1_000_000 and len(event.payload["big"]) == 1_000_000
            continue
        assert event.note, f"{case} has no decode note"
    assert sum(EventRollup.objects.filter(subject=subject).values_list("errors", flat=True)) == len(BAD_INPUTS) - 1
    running.stop()


def test_a_message_over_the_size_cap_is_stored_truncated_with_its_size_and_hash(run_collector, nats_url):
    import hashlib

    stream = unique("BIG")
    subject = f"{stream.lower()}.blob"
    data = b"y" * 5000
    set_payload_cap(1000)
    running = run_collector()
    nats_publish(nats_url, [(subject, data, None)], stream=stream, subjects=[f"{stream.lower()}.>"])
    event = wait_until(lambda: Event.objects.filter(stream=stream).first(), what="big event")
    assert event.truncated and event.size == 5000 and len(bytes(event.raw)) == 1000
    assert bytes(event.sha256) == hashlib.sha256(data).digest()
    assert "truncated" in event.note
    running.stop()


def test_two_collectors_sharing_the_durable_consumers_store_each_message_once(run_collector, nats_url):
    stream = unique("SHR")
    subject = f"{stream.lower()}.n"
    nats_publish(nats_url, [], stream=stream, subjects=[f"{stream.lower()}.>"])
    first, second = run_collector(), run_collector()
    first.wait_until_observing(stream)
    second.wait_until_observing(stream)
    nats_publish(nats_url, [(subject, b'{"n": %d}' % n, None) for n in range(2000)], stream=stream,
                 subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(stream=stream).count() >= 2000, 30, "2000 events")
    assert Event.objects.filter(stream=stream).count() == 2000
    assert Event.objects.filter(stream=stream).values("seq").distinct().count() == 2000
    stored = [c.collector.metrics.snapshot()["stored"] for c in (first, second)]
    assert sum(stored) >= 2000 and all(s > 0 for s in stored), stored
    first.stop()
    second.stop()


def test_subjects_outside_the_include_patterns_are_not_stored(run_collector, nats_url):
    from collector.models import RuntimeSettings

    settings = RuntimeSettings.load()
    settings.exclude_subjects = "noise.>\n"
    settings.save()
    running = run_collector()
    tag = unique("")
    nats_publish(nats_url, [(f"noise.{tag}", b"x", None), (f"signal.{tag}", b"y", None)])
    wait_until(lambda: Event.objects.filter(subject=f"signal.{tag}").exists(), what="signal stored")
    assert not Event.objects.filter(subject=f"noise.{tag}").exists()
    running.stop()
