"""Retention drops whole day partitions; what they held is remembered so that a link
into them answers 410 with the date, not 404."""
from datetime import datetime, timedelta, timezone

from django.db import connection, transaction

from collector.models import PrunedRange, RuntimeSettings

PARTITION_BOUND = r"FROM \('([^']+)'\) TO \('([^']+)'\)"


def partitions(table="collector_event"):
    """(name, start, end) of each partition, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = %s
            """,
            [table],
        )
        rows = cursor.fetchall()
    import re

    found = []
    for name, bound in rows:
        match = re.search(PARTITION_BOUND, bound or "")
        if match:
            start, end = (datetime.fromisoformat(value).astimezone(timezone.utc) for value in match.groups())
            found.append((name, start, end))
    return sorted(found, key=lambda row: row[1])


def prune(now=None, days=None, table="collector_event"):
    """Drop every partition that ends before now - retention; return their names."""
    now = now or datetime.now(timezone.utc)
    days = RuntimeSettings.load().event_retention_days if days is None else days
    cutoff = now - timedelta(days=days)
    dropped = []
    for name, start, end in partitions(table):
        if end > cutoff:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'SELECT min(id), max(id) FROM "{name}"')
            low, high = cursor.fetchone()
            cursor.execute(f'DROP TABLE "{name}"')
            PrunedRange.objects.create(table=table, start=start, end=end, min_id=low, max_id=high)
        dropped.append(name)
    return dropped
