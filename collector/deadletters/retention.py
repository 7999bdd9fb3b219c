"""Retention for dead letters, their rollup and the audit log."""
from datetime import timedelta


def prune(now=None):
    """Delete dead letters and audit entries past their retention (DeadLetterSettings)."""
    from django.utils import timezone as dj_timezone

    from collector.models import (
        AuditEntry,
        DeadLetter,
        DeadLetterHourRollup,
        DeadLetterRollup,
        DeadLetterSettings,
    )

    now = now or dj_timezone.now()
    kept = DeadLetterSettings.load()
    cutoff = now - timedelta(days=kept.retention_days)
    letters, _ = DeadLetter.objects.filter(first_seen__lt=cutoff).delete()
    DeadLetterRollup.objects.filter(minute__lt=cutoff).delete()
    DeadLetterHourRollup.objects.filter(hour__lt=cutoff.replace(minute=0, second=0, microsecond=0)).delete()
    audits, _ = AuditEntry.objects.filter(at__lt=now - timedelta(days=kept.audit_retention_days)).delete()
    return letters, audits
