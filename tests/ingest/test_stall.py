"""A collector that beats but stores nothing is stalled: its heartbeat row says why, the
overview shows it, and /healthz reports the collector down."""
import uuid

import psycopg

from collector.db import conninfo
from collector.ingest import heartbeat as heartbeat_module
from collector.ingest.stall import StallWatch
from collector.models import CollectorHeartbeat, Event
from tests.conftest import nats_publish, wait_until


def test_unit_a_stream_is_stuck_only_while_its_floor_stays_put_with_messages_pending():
    """The floor must stay put for the whole threshold, with messages pending; a moving floor,
    an empty backlog or a stream gone resets the watch."""
    now = [0.0]
    watch = StallWatch(120, clock=lambda: now[0])
    assert watch.observe({"ORDERS": (41, 250), "IDLE": (9, 0)}) == ("", None)
    now[0] = 119.0
    assert watch.observe({"ORDERS": (41, 250), "IDLE": (9, 0)})[0] == ""
    now[0] = 130.0
    reason, since = watch.observe({"ORDERS": (41, 250), "IDLE": (9, 0)})
    assert reason == "stream ORDERS: ack floor stuck at 41 for 130 s with 250 messages pending"
    assert since is not None
    now[0] = 140.0
    assert watch.observe({"ORDERS": (42, 249), "IDLE": (9, 0)}) == ("", None)  # it moved
    now[0] = 300.0
    assert watch.observe({"ORDERS": (42, 0)}) == ("", None)  # stuck, but nothing waits
    now[0] = 500.0
    assert watch.observe({"ORDERS": (42, 3)}) == ("", None)  # waiting again: the clock starts over


def heartbeat(running):
    return CollectorHeartbeat.objects.filter(name=running.collector.name).first()


def test_a_collector_whose_ack_floor_stops_with_messages_pending_is_stalled_and_healthz_says_down(
        run_collector, nats_url, settings, monkeypatch, admin_client_):
    """Another session locks the events table: the collector keeps beating but can store nothing.
    After COLLECTOR_STALL_SECONDS its heartbeat row says it is stalled and why, the overview shows
    "stalled" with the reason, and /healthz answers 503 with the collector down. Once the lock
    goes, the backlog is stored and the collector is up again."""
    settings.COLLECTOR_STALL_SECONDS = 2
    monkeypatch.setattr(heartbeat_module, "HEARTBEAT_SECONDS", 0.3)
    stream = f"STALL{uuid.uuid4().hex[:6].upper()}"
    subject = f"{stream.lower()}.n"
    running = run_collector()
    nats_publish(nats_url, [(subject, b'{"n": 0}', None)], stream=stream, subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 1, what="the first message stored")
    assert admin_client_.get("/healthz").status_code == 200
    with psycopg.connect(conninfo()) as locker:
        locker.execute("LOCK TABLE collector_event IN ACCESS EXCLUSIVE MODE")
        nats_publish(nats_url, [(subject, b'{"n": %d}' % n, None) for n in range(1, 21)], stream=stream,
                     subjects=[f"{stream.lower()}.>"])
        # Other tests' streams with messages waiting are held up by the same lock: wait for this one.
        beat = wait_until(lambda: f"stream {stream}: ack floor stuck at 1 for" in (
            (heartbeat(running) or CollectorHeartbeat()).stalled or "") and heartbeat(running), 20,
            "the heartbeat to say stalled")
        assert f"stream {stream}: ack floor stuck at 1 for" in beat.stalled and "20 messages pending" in beat.stalled
        assert beat.stalled_since is not None
        health = admin_client_.get("/healthz")
        assert health.status_code == 503
        assert health.json()["collector"] == "down" and health.json()["database"] == "up"
        assert f"stream {stream}: ack floor stuck" in health.json()["collector_error"]
        page = admin_client_.get("/").content.decode()
        assert '<span class="badge error">stalled</span>' in page and f"stream {stream}: ack floor stuck" in page
        api = admin_client_.get("/api/overview").json()
        mine = [c for c in api["collectors"] if c["name"] == running.collector.name][0]
        assert f"stream {stream}: ack floor stuck" in mine["stalled"] and mine["stalled_since"]
    wait_until(lambda: Event.objects.filter(stream=stream).count() == 21, what="the backlog stored")
    wait_until(lambda: f"stream {stream}:" not in heartbeat(running).stalled, 10, "this stream's stall to clear")
    # Another test's stream may hold a message delivered to a collector that is gone: it comes
    # back after the observer's ack wait (60 s), and the collector is stalled on it until then.
    wait_until(lambda: heartbeat(running).stalled == "", 75, "every stall to clear")
    assert admin_client_.get("/healthz").status_code == 200
    assert '<span class="badge ok">up</span>' in admin_client_.get("/").content.decode()
