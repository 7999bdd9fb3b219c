"""The store. The collector owns the schema; `collector.store` is its only writer and
`collector.readers` holds the queries that pages and the API share."""
import hashlib
import secrets

from django.conf import settings
from django.db import models


class Broker(models.Model):
    """A bus the collector taps. Brokers named by environment variables are
    mirrored here read-only (`from_env`); more can be added in the admin."""

    KINDS = [("nats", "NATS"), ("rabbitmq", "RabbitMQ")]
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=KINDS, default="nats")
    url = models.CharField(max_length=500, help_text="Connection URL; a password in it is never shown back.")
    enabled = models.BooleanField(default=True)
    from_env = models.BooleanField(default=False, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

    @property
    def display_url(self):
        from dashboard.env import _redact

        return _redact(self.url)


class RuntimeSettings(models.Model):
    """Settings operators change while Eventscope runs: a single row."""

    read_only = models.BooleanField(default=False, help_text="Turn off every state-changing action.")
    event_retention_days = models.PositiveIntegerField(default=7)
    max_payload_bytes = models.PositiveIntegerField(
        default=1024 * 1024, help_text="Larger payloads are stored truncated, with their full size and SHA-256."
    )
    include_subjects = models.TextField(
        blank=True, default="", help_text="Subject patterns to capture, one a line (NATS wildcards * and >). Empty: all."
    )
    exclude_subjects = models.TextField(
        blank=True, default="", help_text="Subject patterns never captured, one a line."
    )

    class Meta:
        verbose_name = verbose_name_plural = "runtime settings"

    def __str__(self):
        return "Runtime settings"

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]


class DecodingRule(models.Model):
    """Where type, version, producer and key are found beyond the built-in conventions."""

    FIELDS = [("type", "type"), ("version", "version"), ("producer", "producer"), ("key", "key")]
    field = models.CharField(max_length=16, choices=FIELDS)
    header = models.CharField(max_length=200, help_text="Header or metadata name, matched case-insensitively.")
    subject_pattern = models.CharField(max_length=300, default=">", help_text="NATS wildcard pattern it applies to.")
    enabled = models.BooleanField(default=True)

    def __str__(self):
        return f"{self.field} from {self.header} on {self.subject_pattern}"


class Topic(models.Model):
    """A subject (core NATS) or a stream's subject seen by the collector."""

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE)
    name = models.CharField(max_length=500)
    stream = models.CharField(max_length=200, blank=True, default="")
    best_effort = models.BooleanField(default=False, help_text="Captured by the core tap: no replay.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broker", "name"], name="topic_broker_name")]
        indexes = [models.Index(fields=["-last_seen"])]
        permissions = [("publish_message", "Can publish a message to a subject")]

    def __str__(self):
        return self.name


class Event(models.Model):
    """One message as the broker delivered it. The table is partitioned by day on `ts`
    (created by SQL in the migration); the real primary key is (id, ts) and
    (broker, stream, seq, ts) is unique, so a replayed message is a no-op."""

    id = models.BigIntegerField(primary_key=True)
    ts = models.DateTimeField(help_text="Broker time (JetStream) or receive time (core NATS).")
    received_at = models.DateTimeField()
    broker = models.ForeignKey(Broker, on_delete=models.DO_NOTHING, db_constraint=False)
    subject = models.TextField()
    stream = models.TextField(blank=True, default="")
    seq = models.BigIntegerField()
    headers = models.JSONField(null=True)
    raw = models.BinaryField()
    size = models.IntegerField()
    truncated = models.BooleanField(default=False)
    sha256 = models.BinaryField(null=True)
    format = models.TextField()
    event_id = models.TextField(null=True)
    type = models.TextField(null=True)
    version = models.TextField(null=True)
    producer = models.TextField(null=True)
    key = models.TextField(null=True)
    trace_id = models.TextField(null=True)
    span_id = models.TextField(null=True)
    payload = models.JSONField(null=True)
    note = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "collector_event"

    @property
    def best_effort(self):
        return self.stream == ""


class EventRollup(models.Model):
    """Per minute: topic x producer x type x version counts, kept in the same
    transaction as the events they count."""

    minute = models.DateTimeField()
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE)
    subject = models.TextField()
    producer = models.TextField(default="")
    type = models.TextField(default="")
    version = models.TextField(default="")
    count = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "broker", "subject", "producer", "type", "version"], name="rollup_key"
            )
        ]
        indexes = [models.Index(fields=["subject", "minute"]), models.Index(fields=["minute"])]


class PrunedRange(models.Model):
    """A partition dropped by retention, so a link into it answers 410 with the date."""

    table = models.CharField(max_length=64)
    start = models.DateTimeField()
    end = models.DateTimeField()
    min_id = models.BigIntegerField(null=True)
    max_id = models.BigIntegerField(null=True)
    pruned_at = models.DateTimeField(auto_now_add=True)


class CollectorHeartbeat(models.Model):
    """Each collector process writes its row every few seconds with its counters."""

    name = models.CharField(max_length=200, unique=True)
    started = models.DateTimeField()
    beat = models.DateTimeField()
    counters = models.JSONField(default=dict)


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


from collector.models_dlq import *  # noqa: E402,F401,F403  (dead letters)
from collector.models_traces import *  # noqa: E402,F401,F403  (spans and traces)
