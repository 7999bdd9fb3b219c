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
