"""Brokers, runtime settings, decoding rules and the collectors' heartbeats: what operators
configure in the admin and what the collector reads to run."""
from django.core.validators import MinValueValidator
from django.db import models

from collector.secrets import redact_url

__all__ = ["Broker", "RuntimeSettings", "DecodingRule", "CollectorHeartbeat"]


class Broker(models.Model):
    """A bus the collector taps. Brokers named by environment variables are
    mirrored here read-only (`from_env`); more can be added in the admin."""

    KINDS = [("nats", "NATS"), ("rabbitmq", "RabbitMQ"), ("kafka", "Kafka")]
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=KINDS, default="nats")
    url = models.CharField(max_length=500, help_text="Connection URL; a password in it is never shown back.")
    enabled = models.BooleanField(default=True)
    exchanges = models.TextField(
        blank=True, default="",
        help_text="RabbitMQ: exchanges to tap when the management API cannot list them, one 'name type' a line "
                  "(type: topic, fanout, direct or headers).",
    )
    from_env = models.BooleanField(default=False, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

    @property
    def display_url(self):
        return redact_url(self.url)


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
    live_rate_cap = models.PositiveIntegerField(
        default=200, validators=[MinValueValidator(1)],
        help_text="Events a second one live page is sent at most; above it the page gets a sample and exact counts.",
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


class CollectorHeartbeat(models.Model):
    """Each collector process writes its row every few seconds with its counters, and
    whether it is stalled: beating, but its observers' ack floors stuck with messages
    pending for COLLECTOR_STALL_SECONDS (see `collector.ingest.stall`)."""

    name = models.CharField(max_length=200, unique=True)
    started = models.DateTimeField()
    beat = models.DateTimeField()
    counters = models.JSONField(default=dict)
    stalled = models.TextField(blank=True, default="", help_text="Why it is stalled; empty while it makes progress.")
    stalled_since = models.DateTimeField(null=True, blank=True)
