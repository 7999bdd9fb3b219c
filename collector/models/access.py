"""API tokens: per-user Bearer tokens for scripts and Grafana."""
import hashlib
import secrets

from django.conf import settings
from django.db import models

__all__ = ["ApiToken"]


def _hash_token(token):
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A per-user token for scripts and Grafana (`Authorization: Bearer <token>`).
    Only its hash is kept; the token itself is shown once, when it is made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def issue(self):
        """Set a fresh secret and return it; the caller shows it once."""
        token = "es_" + secrets.token_urlsafe(32)
        self.prefix = token[:10]
        self.digest = _hash_token(token)
        return token

    @classmethod
    def user_for(cls, token):
        try:
            found = cls.objects.select_related("user").get(digest=_hash_token(token))
        except cls.DoesNotExist:
            return None
        return found
