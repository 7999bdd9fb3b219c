"""The hourly dead-letter rollup: capture keeps it beside the per-minute one (counts add,
whatever the order; a replay adds nothing), and the /dlq summary of a window with partial
hours at both edges reads hourly rows for its whole hours, with the same figures as from
minute rows alone."""
from datetime import UTC, datetime, timedelta

from collector.deadletters import readers
from collector.deadletters.capture import store_letters
from collector.models import DeadLetter, DeadLetterHourRollup, DeadLetterRollup
from tests.deadletters.conftest import letter


def test_the_dlq_summary_reads_hourly_rows_for_whole_hours_with_the_same_figures(viewer_client, broker, monkeypatch):
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # 3 h 40 min of dead letters, one every 97 s, stored newest first (out of time order).
    first = top - timedelta(hours=3, minutes=20)
    times = [first + timedelta(seconds=97 * n) for n in range((3 * 3600 + 40 * 60) // 97)]
    for n, when in reversed(list(enumerate(times))):
        letter(broker, f"orders.s{n % 4}", consumer=f"worker{n % 3}", first_seen=when, key=f"hourly:{n}",
               reason=DeadLetter.Reason.TERMINATED if n % 5 == 0 else DeadLetter.Reason.MAX_DELIVERIES)
    # A replay of a stored letter is not counted again.
    again = DeadLetter.objects.get(key="hourly:7")
    assert store_letters([DeadLetter(key=again.key, broker=broker, subject=again.subject, reason=again.reason,
                                      consumer=again.consumer, first_seen=again.first_seen,
                                      last_seen=again.first_seen)]) == []
    assert sum(DeadLetterHourRollup.objects.values_list("count", flat=True)) == len(times)
    assert sum(DeadLetterRollup.objects.values_list("count", flat=True)) == len(times)

    # From 17 past one hour to 23 past another: whole hours in between, partial hours at the edges.
    start, end = top - timedelta(hours=2, minutes=43, seconds=30), top + timedelta(minutes=-37)
    query = {"from": start.isoformat(), "to": end.isoformat()}

    def summary(**filters):
        return viewer_client.get("/api/dlq", {**query, **filters}).json()["summary"]

    monkeypatch.setattr(readers, "SPARK_HOURS_FROM", 2)  # whole-hour trend buckets from 2 h on
    hourly = [summary(), summary(consumer="worker1"), summary(reason="terminated")]
    monkeypatch.setattr(readers, "HOURLY", False)
    assert [summary(), summary(consumer="worker1"), summary(reason="terminated")] == hourly
    expected = sum(1 for when in times if start.replace(second=0) <= when < end)
    assert hourly[0]["total"] == expected
    assert len(hourly[0]["topic"][0]["spark"]) == 3  # 3 clock hours touched

    # The whole hours really come from hourly rows: without their minute rows the figures stay.
    DeadLetterRollup.objects.filter(minute__gte=top - timedelta(hours=2), minute__lt=top - timedelta(hours=1)).delete()
    monkeypatch.setattr(readers, "HOURLY", True)
    assert summary() == hourly[0]
