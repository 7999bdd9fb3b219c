"""Revoking share links: one place, so the admin's actions and anything later write the
same audit entries. Links are made by the trace page (`dashboard.traces.views`)."""
from django.db import connection, transaction
from django.utils import timezone

from collector.models import AuditEntry
from collector.models.traces import ShareLink


def active():
    """Links not revoked and not past their own expiry."""
    return ShareLink.objects.filter(revoked=None, expires__gt=timezone.now())


def revoke(links, user):
    """Revoke the links of `links` (a queryset) not yet revoked; one audit entry per link.
    Returns how many were revoked. The UPDATE claims the rows it changes (RETURNING), so
    two admins revoking at once log each link once."""
    ids = list(links.filter(revoked=None).values_list("pk", flat=True))
    if not ids:
        return 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE collector_sharelink SET revoked = %s, revoked_by_id = %s "
                           "WHERE id = ANY(%s) AND revoked IS NULL RETURNING id", [timezone.now(), user.pk, ids])
            claimed = [row[0] for row in cursor.fetchall()]
        revoked = ShareLink.objects.filter(pk__in=claimed).select_related("created_by")
        AuditEntry.objects.bulk_create([
            AuditEntry(user=user, action="revoke share link", target=link.trace_id,
                       detail={"link": link.pk, "created_by": link.created_by.get_username() if link.created_by else None,
                               "expires": int(link.expires.timestamp())},
                       result="link revoked")
            for link in revoked
        ])
    return len(claimed)
