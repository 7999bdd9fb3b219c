"""Retention for events: whole day partitions past `event_retention_days` are dropped and
remembered, so that a link into them answers 410 with the date, not 404. What is derived
from those days goes with them: the per-minute and hourly rollups before the oldest day kept, and the
topics last seen before it.

A message older than that (a stream backfilled from its start) is never stored: the
collector counts it as expired and acks it (`Collector.split_expired`)."""
from datetime import datetime, timedelta, timezone

from collector.models import EventHourRollup, EventRollup, RuntimeSettings, Topic
from collector.partitions import EVENTS, drop_before, midnight


def expiry(now, days):
    """The start of the oldest day kept: a message before it is past retention, and its
    day's partition is one `prune` drops."""
    return midnight((now - timedelta(days=days)).date())


def prune(now=None, days=None, table=EVENTS):
    """Drop every partition that ends before now - retention, with the rollup minutes and
    the topics older than the oldest day kept; return the partitions' names."""
    now = now or datetime.now(timezone.utc)
    days = RuntimeSettings.load().event_retention_days if days is None else days
    dropped = drop_before(table, now - timedelta(days=days), ids=True)
    if table == EVENTS:
        oldest_kept = expiry(now, days)
        EventRollup.objects.filter(minute__lt=oldest_kept).delete()
        EventHourRollup.objects.filter(hour__lt=oldest_kept).delete()
        Topic.objects.filter(last_seen__lt=oldest_kept).delete()
    return dropped
