"""Unit tests: statuses and the "safe to retire" answer, from what the readers found."""
from datetime import UTC, datetime, timedelta

from collector.versions.answer import judge

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
START = NOW - timedelta(hours=1)


def version(produced=0, last_seen=None, consumers=None, drift=0, instances=()):
    producers = [{"name": "order", "last_seen": last_seen, "instances": list(instances)}] if last_seen else []
    return {"produced": produced, "producers": producers, "consumers": consumers or {}, "drift": drift}


def consumer(processed=1, dead=0, last_dead=None, since=None):
    return {"processed": processed, "floor_passed": None, "first_processed": since, "dead_letters": dead,
            "last_dead_letter": last_dead}


def test_unit_an_old_version_nobody_needs_is_safe_to_retire_and_says_why():
    versions = {
        "1": version(0, NOW - timedelta(days=3), {"payment": consumer(), "inventory": consumer()},
                     instances=[{"service_version": "1.4", "instance": "a"}, {"service_version": "1.4", "instance": "b"}]),
        "2": version(10, NOW, {"payment": consumer(since=NOW - timedelta(days=2)), "inventory": consumer()}),
    }
    verdicts = judge(versions, START, NOW)
    assert (verdicts["1"]["status"], verdicts["2"]["status"]) == ("safe to retire", "current")
    assert verdicts["1"]["answer"]["text"] == (
        "last produced 3 days ago by order@1.4 (2 instances); consumers inventory and payment both processed v2 "
        "since Sat 28 Nov 12:00 UTC → safe to retire")


def test_unit_each_blocker_is_named_and_statuses_agree_with_and_without_words():
    versions = {
        "1": version(4, NOW - timedelta(minutes=5), {"audit": consumer()}),
        "1.5": version(0, NOW - timedelta(days=1), {"audit": consumer()}),
        "2": version(10, NOW, {"billing": consumer(dead=3, last_dead=NOW - timedelta(minutes=1))}, drift=0),
        "": version(2, NOW - timedelta(minutes=1)),
    }
    verdicts = judge(versions, START, NOW)
    assert {v: r["status"] for v, r in verdicts.items()} == {
        "1": "superseded", "1.5": "blocked", "2": "current", "": "unversioned"}
    assert [(b["kind"], b["name"]) for b in verdicts["1"]["answer"]["blockers"]] == [
        ("producer", "order"), ("consumer", "audit"), ("dead_letters", "2")]
    assert "3 dead letters on v2 (billing)" in verdicts["1.5"]["answer"]["text"]
    lean = judge(versions, START, NOW, words=False)
    assert {v: r["status"] for v, r in lean.items()} == {v: r["status"] for v, r in verdicts.items()}
    versions["2"]["drift"] = 1
    assert judge(versions, START, NOW)["2"]["status"] == "drifting"
