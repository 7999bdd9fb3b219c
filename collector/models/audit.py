"""The audit log: who did what, when, and how it went."""
from django.conf import settings
from django.db import models

__all__ = ["AuditEntry"]


class AuditEntry(models.Model):
    """Who did what, when, and how it went: every state-changing action."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.user} {self.action} {self.target}"
