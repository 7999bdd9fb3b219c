"""Day partitions of the time-partitioned tables (`collector_event`, `collector_span`,
`collector_lagsample`): the writers create them on demand, retention lists and drops whole
ones and remembers what it dropped (`PrunedRange`), so a link into a dropped day answers 410
with its date."""
import re
from datetime import datetime, timedelta, timezone

EVENTS = "collector_event"
SPANS = "collector_span"
LAG_SAMPLES = "collector_lagsample"

# Advisory lock keys, one per table: several collectors may race to create the same day.
_LOCKS = {EVENTS: 72161, SPANS: 72162, LAG_SAMPLES: 72163}
_BOUND = r"FROM \('([^']+)'\) TO \('([^']+)'\)"


def partition_name(table, day):
    return f"{table}_p{day:%Y%m%d}"


def midnight(day):
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


class Partitions:
    """Creates `table`'s day partitions on demand; remembers the ones it knows exist."""

    def __init__(self, table):
        self.table = table
        self.known = set()

    async def ensure(self, conn, days):
        for day in sorted(set(days) - self.known):
            start = midnight(day)
            async with conn.cursor() as cur:
                await cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCKS[self.table], int(f"{day:%Y%m%d}")])
                await cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(self.table, day)} PARTITION OF {self.table} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
                )
            await conn.commit()
            self.known.add(day)

    def forget(self):
        """Retention dropped partitions (here or in another process): check again before writing."""
        self.known.clear()


def no_partition(error):
    """Whether a write failed because its day's partition is gone (dropped after this
    process created or saw it)."""
    return getattr(error, "sqlstate", None) == "23514" and "no partition" in str(error)


def partitions(table=EVENTS):
    """(name, start, end) of each partition of `table`, oldest first."""
    from django.db import connection

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
    found = []
    for name, bound in rows:
        match = re.search(_BOUND, bound or "")
        if match:
            start, end = (datetime.fromisoformat(value).astimezone(timezone.utc) for value in match.groups())
            found.append((name, start, end))
    return sorted(found, key=lambda row: row[1])


def drop_before(table, cutoff, ids=False):
    """Drop every partition of `table` that ends before `cutoff`, each recorded as a
    `PrunedRange` (with its lowest and highest id when `ids`); returns their names."""
    from django.db import connection, transaction

    from collector.models import PrunedRange

    dropped = []
    for name, start, end in partitions(table):
        if end > cutoff:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            low = high = None
            if ids:
                cursor.execute(f'SELECT min(id), max(id) FROM "{name}"')
                low, high = cursor.fetchone()
            cursor.execute(f'DROP TABLE "{name}"')
            PrunedRange.objects.create(table=table, start=start, end=end, min_id=low, max_id=high)
        dropped.append(name)
    return dropped
