from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from collector.models import Event, EventRollup, PrunedRange, Topic
from collector.partitions import partitions
from tests.events.test_topic_pages import message, write

pytestmark = pytest.mark.django_db(transaction=True)


def test_prune_drops_whole_old_partitions_and_old_links_answer_410(viewer_client, capsys):
    now = datetime.now(timezone.utc)
    old = message("old.topic", b'{"n": 1}', 1, ago=10 * 86400)
    fresh = message("new.topic", b'{"n": 2}', 2)
    write([old, fresh])
    old_id = Event.objects.get(subject="old.topic").id
    assert len(partitions()) >= 2
    call_command("prune", days=7)
    assert "1 partition(s) dropped" in capsys.readouterr().out
    assert not Event.objects.filter(subject="old.topic").exists()
    assert Event.objects.filter(subject="new.topic").exists()
    pruned = PrunedRange.objects.get()
    assert pruned.min_id == old_id and pruned.end <= now - timedelta(days=7) + timedelta(days=1)
    response = viewer_client.get(f"/events/{old_id}/")
    assert response.status_code == 410


def test_prune_keeps_partitions_inside_the_retention(db):
    write([message("recent", b"{}", 1, ago=2 * 86400)])
    call_command("prune", days=7)
    assert Event.objects.filter(subject="recent").exists()


def test_prune_takes_the_rollup_and_the_topics_of_the_days_it_drops(db):
    """What is derived from a dropped day goes with it: rollup minutes before the oldest day
    kept, and topics last seen before it. A topic with newer messages stays, and its rollup
    still counts exactly the events that are left."""
    write([message("gone.topic", b'{"n": 1}', 1, ago=10 * 86400),
           message("both.topic", b'{"n": 2}', 2, ago=10 * 86400),
           message("both.topic", b'{"n": 3}', 3),
           message("kept.topic", b'{"n": 4}', 4, ago=2 * 86400)])
    assert EventRollup.objects.filter(subject="gone.topic").exists()
    call_command("prune", days=7)
    assert not Topic.objects.filter(name="gone.topic").exists()
    assert not EventRollup.objects.filter(subject="gone.topic").exists()
    assert set(Topic.objects.values_list("name", flat=True)) >= {"both.topic", "kept.topic"}
    for subject in ("both.topic", "kept.topic"):
        counted = sum(EventRollup.objects.filter(subject=subject).values_list("count", flat=True))
        assert counted == Event.objects.filter(subject=subject).count() == 1, subject
