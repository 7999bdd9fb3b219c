"""Direct psycopg connections for the collector's write path (the ORM is for pages)."""
from django.conf import settings


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
