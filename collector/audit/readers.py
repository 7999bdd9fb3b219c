"""Queries over the audit log, shared by the page and the API."""
from django.db.models import Q

from collector.keyset import decode_cursor, encode_cursor
from collector.models import AuditEntry

PAGE = 50

FILTERS = ("user", "action", "target", "result")


def audit(filters, before=None, limit=PAGE):
    """Audit entries newest first, keyset-paginated on (at, id)."""
    found = AuditEntry.objects.select_related("user")
    if filters.get("user"):
        found = found.filter(user__username=filters["user"])
    if filters.get("action"):
        found = found.filter(action__startswith=filters["action"])
    if filters.get("target"):
        found = found.filter(target__icontains=filters["target"])
    if filters.get("result"):
        found = found.filter(result__icontains=filters["result"])
    if before:
        when, ident = decode_cursor(before)
        found = found.filter(Q(at__lt=when) | Q(at=when, id__lt=ident))
    rows = list(found.order_by("-at", "-id")[: limit + 1])
    return rows[:limit], len(rows) > limit


def audit_cursor(entry):
    return encode_cursor(entry.at, entry.id)
