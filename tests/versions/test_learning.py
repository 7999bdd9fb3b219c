"""What the collector learns from real traffic: drift flagged with its event, semantic versions in
order, events without a version grouped with their producers, schemas merged from shapes."""
from collector.models import Event, VersionDrift, VersionShape
from collector.versions import inference
from tests.conftest import nats_publish, wait_until
from tests.versions.conftest import envelope, publish_envelopes, stored, unique


def test_a_payload_of_a_wrong_type_is_flagged_as_drift_with_its_event(versions_collector, nats_url, admin_client_):
    """Once v1 has an established schema (item a string, qty always there), a payload with a
    number for item, and one without qty, are drift; the page links their events."""
    stream, subject, type_ = unique("DRIFT"), unique("drift.") + ".placed", unique("shop") + ".order.placed"
    good = [(type_, 1, {"item": "mug", "qty": i}) for i in range(inference.MIN_ESTABLISHED)]
    publish_envelopes(nats_url, stream, subject, good)
    stored(type_, len(good))
    wrong_id, wrong = envelope(type_, 1, {"item": 42, "qty": 1})
    missing_id, missing = envelope(type_, 1, {"item": "tee"})
    fine_id, fine = envelope(type_, 1, {"item": "tee", "qty": 3, "gift": True})  # an added field is no drift
    nats_publish(nats_url, [(subject, data, {"Nats-Msg-Id": ident}) for ident, data in
                            ((wrong_id, wrong), (missing_id, missing), (fine_id, fine))])
    wait_until(lambda: VersionDrift.objects.filter(type=type_).count() == 2, 20, "two drifting shapes")
    by_path = {d.reasons[0]["path"]: d for d in VersionDrift.objects.filter(type=type_)}
    assert set(by_path) == {"item", "qty"}
    assert by_path["item"].reasons[0]["kind"] == "type" and by_path["item"].reasons[0]["found"] == "integer"
    assert by_path["qty"].reasons[0]["kind"] == "missing"
    wrong_event = Event.objects.get(event_id=wrong_id)
    assert by_path["item"].first_event_id == by_path["item"].last_event_id == wrong_event.id
    assert by_path["item"].version == "1" and by_path["item"].count == 1

    page = admin_client_.get(f"/versions/{type_}/", {"last": "15m"}).content.decode()
    assert "item is integer, was always string" in page and f"/events/{wrong_event.id}/" in page
    listed = admin_client_.get("/api/versions", {"last": "15m", "status": "drifting"}).json()
    assert [(t["type"], t["versions"][0]["status"]) for t in listed["types"]] == [(type_, "drifting")]
    # Schema: the union of the shapes, with presence and types; the shapes add up to every payload.
    schema = admin_client_.get(f"/api/versions/{type_}/schema", {"version": "1"})
    assert schema["Content-Disposition"].startswith("attachment")
    document = schema.json()
    assert document["properties"]["item"]["type"] == ["string", "integer"]
    assert document["required"] == ["item"] and document["x-eventscope"]["payloads"] == len(good) + 3
    assert sum(VersionShape.objects.filter(type=type_).values_list("count", flat=True)) == len(good) + 3


def test_semantic_versions_sort_as_versions_and_unversioned_events_are_grouped_with_their_producers(
        versions_collector, nats_url, admin_client_):
    """Versions from type suffixes and schema URLs (1.9.0, 1.10.0, 2) sort as versions: 2 is
    current; events without a version form one group naming every producer that sends them."""
    stream, subject, type_ = unique("SEMVER"), unique("semver.") + ".changed", unique("shop") + ".user.changed"
    messages = []
    for suffix in ("v1.10.0", "v1.9.0", "v2", "v1.9.0"):
        ident, data = envelope(f"{type_}.{suffix}", None, {"name": "ann"})
        messages.append((subject, data, {"Nats-Msg-Id": ident, "Micro-From-Service": "users"}))
    for producer in ("legacy-users", "importer"):
        ident, data = envelope(type_, None, {"name": "bob"})
        messages.append((subject, data, {"Nats-Msg-Id": ident, "Micro-From-Service": producer}))
    slashed_id, slashed = envelope(f"{type_}/eu", "1", {"name": "dee"})  # CloudEvents types are free text
    messages.append((subject, slashed, {"Nats-Msg-Id": slashed_id}))
    ident, data = envelope(type_, None, {"name": "cy"})
    messages.append((subject, data, {"Nats-Msg-Id": ident, "dataschema": "https://schemas.test/user/v1.2.0.json",
                                     "Micro-From-Service": "users"}))
    nats_publish(nats_url, messages, stream=stream, subjects=[subject])
    stored(type_, len(messages) - 1)
    stored(f"{type_}/eu", 1)

    data = admin_client_.get(f"/api/versions/{type_}", {"last": "15m"}).json()
    assert [v["version"] for v in data["versions"]] == ["", "1.2.0", "1.9.0", "1.10.0", "2"]
    # Windows over two days read the daily counts the linker sums from the hours: the same figures.
    week = admin_client_.get(f"/api/versions/{type_}", {"last": "7d"}).json()
    assert [(v["version"], v["count"]) for v in week["versions"]] == [(v["version"], v["count"])
                                                                     for v in data["versions"]]
    statuses = {v["version"]: v["status"] for v in data["versions"]}
    assert statuses["2"] == "current" and statuses[""] == "unversioned"
    assert statuses["1.10.0"] == "superseded"
    unversioned = data["versions"][0]
    assert unversioned["label"] == "unversioned" and unversioned["producers"] == ["importer", "legacy-users"]
    assert "importer and legacy-users" in unversioned["answer"]["text"]
    page = admin_client_.get("/versions/", {"last": "15m", "producer": "importer"}).content.decode()
    assert type_ in page and "unversioned" in page
    assert page.index(">v1.9.0<") < page.index(">v1.10.0<") < page.index(">v2<")
    assert admin_client_.get(f"/versions/{type_}/eu/", {"last": "15m"}).status_code == 200
    # Keyset pages in name order, and the topic filter.
    first = admin_client_.get("/api/versions", {"last": "15m", "type": type_}).json()
    assert [t["type"] for t in first["types"]] == [type_, f"{type_}/eu"] and first["next"] is None
    from collector.versions import readers
    from dashboard import timewindow

    window = timewindow.from_query({"last": "15m"})
    page_one, cursor, _ = readers.version_list(window, {"type": type_}, limit=1)
    page_two, end, _ = readers.version_list(window, {"type": type_}, after=cursor, limit=1)
    assert ([t["type"] for t in page_one], [t["type"] for t in page_two], end) == ([type_], [f"{type_}/eu"], None)
    on_topic = admin_client_.get("/api/versions", {"last": "15m", "topic": subject}).json()
    assert {t["type"] for t in on_topic["types"]} == {type_, f"{type_}/eu"}
    assert admin_client_.get("/api/versions", {"last": "15m", "topic": "no.such.topic"}).json()["types"] == []
    assert admin_client_.get("/api/versions", {"status": "sideways"}).status_code == 400
    assert admin_client_.get(f"/api/versions/{type_}/eu/schema", {"version": "1"}).json()["required"] == ["name"]


def test_examples_outlive_event_retention_and_their_event_links_answer_410(versions_collector, nats_url,
                                                                          admin_client_):
    from datetime import UTC, datetime, timedelta

    from collector.events.retention import prune

    stream, subject, type_ = unique("EXPIRE"), unique("expire.") + ".sent", unique("shop") + ".mail.sent"
    publish_envelopes(nats_url, stream, subject, [(type_, 3, {"to": "ann@example.test", "tries": 1})])
    stored(type_, 1)
    shape = VersionShape.objects.get(type=type_)
    assert shape.example == {"to": "ann@example.test", "tries": 1} and shape.example_subject == subject
    assert admin_client_.get(f"/events/{shape.example_event_id}/").status_code == 200

    prune(now=datetime.now(UTC) + timedelta(days=10), days=7)  # today's events are past retention
    assert not Event.objects.filter(id=shape.example_event_id).exists()
    page = admin_client_.get(f"/versions/{type_}/", {"last": "15m"}).content.decode()
    assert "ann@example.test" in page and f"/events/{shape.example_event_id}/" in page
    assert admin_client_.get(f"/events/{shape.example_event_id}/").status_code == 410


def test_prune_keeps_a_month_of_hourly_counts_and_a_year_of_daily_ones(db):
    """Retention of the versions tables, as the collector runs it once an hour."""
    from datetime import UTC, datetime, timedelta

    from collector.models import VersionRollup, VersionRollupDay
    from collector.versions.linker import prune

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for days in (1, 40):
        VersionRollup.objects.create(bucket=now - timedelta(days=days), type="t", subject="s", count=1)
        VersionRollupDay.objects.create(bucket=now - timedelta(days=days * 10), type="t", subject="s", count=1)
    deleted = prune()
    assert deleted["collector_versionrollup"] == 1 and deleted["collector_versionrollupday"] == 1
    assert list(VersionRollup.objects.values_list("bucket", flat=True)) == [now - timedelta(days=1)]
