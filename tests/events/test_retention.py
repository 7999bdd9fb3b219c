from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from collector.models import Event, PrunedRange
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
