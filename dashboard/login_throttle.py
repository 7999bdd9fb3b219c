"""Login lockouts on the audit log. django-axes counts failed logins and locks a user
name or an address out (settings: AXES_*); this writes each lockout, and each login it
refuses while locked, to the audit log."""
from django.dispatch import receiver

from axes.signals import user_locked_out


@receiver(user_locked_out, dispatch_uid="eventscope.login_lockout_audit")
def audit_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    from django.contrib.auth import get_user_model

    from collector.models import AuditEntry

    user = get_user_model().objects.filter(username=username).first() if username else None
    failures = getattr(request, "axes_failures_since_start", None)
    AuditEntry.objects.create(
        user=user, action="login lockout", target=f"{username or '?'} from {ip_address or '?'}",
        detail={"username": username, "ip_address": ip_address, "failures": failures},
        result=f"locked out after {failures} failed logins" if failures else "login refused: locked out",
    )
