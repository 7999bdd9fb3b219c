"""Direct psycopg connections for the collector's write path (the ORM is for pages)."""
import psycopg
from django.conf import settings

from collector.partitions import Partitions


def conninfo(alias="default"):
    db = settings.DATABASES[alias]
    parts = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        **db.get("OPTIONS", {}),
    }
    return " ".join(f"{key}='{_quote(value)}'" for key, value in parts.items() if value)


def _quote(value):
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


class WriterConnection:
    """One direct connection of a writer, with the day partitions it knows: connected on
    first use and again after `close()` (a writer closes it when the database failed)."""

    def __init__(self, prepare, table, connect_timeout=None):
        self.prepare, self.table, self.connect_timeout = prepare, table, connect_timeout
        self.conn = None
        self.partitions = Partitions(table)

    async def connected(self):
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(conninfo(), connect_timeout=self.connect_timeout)
            await self.prepare(self.conn)
            self.partitions = Partitions(self.table)
        return self.conn

    async def close(self):
        if self.conn is not None:
            try:
                await self.conn.close()
            except Exception:  # already gone
                pass
        self.conn = None


# SQLSTATE classes that blame one row: data exceptions (22: out of range, bad encoding ...),
# integrity constraints (23) and program limits (54: an index row too large). Waiting
# cures none of them; storing that row differently does.
_ROW_CLASSES = ("22", "23", "54")


def is_outage(error):
    """Whether `error` is database trouble to wait out, acking nothing meanwhile: the
    server unreachable, restarting, out of space, or the schema or privileges wrong
    (nothing is dropped while an operator fixes it), rather than a refused row (store it
    differently and go on). Takes psycopg's errors and Django's wrappers of them; any
    other exception is no outage."""
    from django import db

    if not isinstance(error, (psycopg.Error, db.Error)):
        return False
    cause = error.__cause__ if isinstance(error, db.Error) and error.__cause__ is not None else error
    state = getattr(cause, "sqlstate", None)
    return not (state and state.startswith(_ROW_CLASSES))
