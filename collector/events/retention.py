"""Retention for events: whole day partitions past `event_retention_days` are dropped and
remembered, so that a link into them answers 410 with the date, not 404."""
from datetime import datetime, timedelta, timezone

from collector.models import RuntimeSettings
from collector.partitions import EVENTS, drop_before


def prune(now=None, days=None, table=EVENTS):
    """Drop every partition that ends before now - retention; return their names."""
    now = now or datetime.now(timezone.utc)
    days = RuntimeSettings.load().event_retention_days if days is None else days
    return drop_before(table, now - timedelta(days=days), ids=True)
