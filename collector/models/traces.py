"""The store's trace tables: spans, trace summaries, per-minute RED rollups and the
service/operation list. `collector.traces.writer` is their only writer; it keeps the
summaries, rollups and operations in the same transaction as the spans."""
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models

__all__ = ["Span", "TraceSummary", "SpanRollup", "SpanOperation", "TraceSettings", "ShareLink",
           "DURATION_BUCKETS_US"]

# Upper bounds (microseconds) of the RED view's duration histogram; one more bucket
# holds everything slower. Percentiles are read from these by interpolation.
DURATION_BUCKETS_US = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
]


class Span(models.Model):
    """One span as a receiver decoded it. The table is partitioned by day on `start`
    (created by SQL in the migration); (trace_id, span_id, start) is its key, so the
    same span sent twice is stored once."""

    trace_id = models.TextField(primary_key=True)  # not unique alone; Django needs a primary key
    span_id = models.TextField()
    parent_span_id = models.TextField(null=True)
    service = models.TextField()
    operation = models.TextField()
    kind = models.TextField()
    start = models.DateTimeField()
    duration_us = models.BigIntegerField()
    status_code = models.TextField()
    status_message = models.TextField()
    error = models.BooleanField()
    tags = models.JSONField()
    resource = models.JSONField()
    events = models.JSONField()
    links = models.JSONField()
    scope = models.TextField()
    message_id = models.TextField(null=True, help_text="messaging.message.id, to find the event it carried")
    destination = models.TextField(null=True, help_text="messaging.destination.name")
    notes = models.TextField(null=True)
    received_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "collector_span"


class TraceSummary(models.Model):
    """What trace search needs without reading spans; updated with every batch."""

    trace_id = models.CharField(max_length=32, primary_key=True)
    start = models.DateTimeField()
    end = models.DateTimeField()
    root_service = models.TextField(default="")
    root_operation = models.TextField(default="")
    span_count = models.IntegerField(default=0)
    error_count = models.IntegerField(default=0)
    services = ArrayField(models.TextField(), default=list)

    class Meta:
        indexes = [
            models.Index(fields=["-start"], name="tracesummary_start"),
            GinIndex(fields=["services"], name="tracesummary_services"),
        ]

    @property
    def duration_us(self):
        return int((self.end - self.start).total_seconds() * 1_000_000)


class SpanRollup(models.Model):
    """Per minute, service and operation: count, errors, summed duration and a fixed-bucket
    duration histogram (DURATION_BUCKETS_US): the RED view without reading spans."""

    minute = models.DateTimeField()
    service = models.TextField()
    operation = models.TextField()
    count = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    duration_sum_us = models.BigIntegerField(default=0)
    buckets = ArrayField(models.BigIntegerField(), default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "service", "operation"], name="spanrollup_key")]
        indexes = [models.Index(fields=["service", "minute"], name="spanrollup_service")]


class SpanOperation(models.Model):
    """Each (service, operation, kind) seen within the span retention, for the service and operation lists."""

    service = models.TextField()
    operation = models.TextField()
    kind = models.TextField(default="")
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "operation", "kind"], name="spanoperation_key")]


class TraceSettings(models.Model):
    """Trace settings operators change while Eventscope runs: a single row."""

    span_retention_days = models.PositiveIntegerField(default=7)
    share_links = models.BooleanField(default=True, help_text="Operators may make signed read-only links to one trace.")
    share_link_max_days = models.PositiveIntegerField(default=7, help_text="Longest life of a share link.")
    max_body_bytes = models.PositiveIntegerField(default=16 * 1024 * 1024, help_text="Larger span payloads get 413.")

    class Meta:
        verbose_name = verbose_name_plural = "trace settings"

    def __str__(self):
        return "Trace settings"

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]


class ShareLink(models.Model):
    """A read-only link to one trace, as issued. The signed token names this row, so a
    link opens only while its row says so: not revoked, not past its own expiry, and not
    older than the trace settings' `share_link_max_days` allows now (lowering it also
    shortens links already issued). The trace's times are kept so that a link to a trace
    gone by retention can say when it went."""

    trace_id = models.CharField(max_length=32, db_index=True)
    trace_start = models.DateTimeField()
    trace_end = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    expires = models.DateTimeField(help_text="The life chosen when it was made.")
    revoked = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"Share link {self.pk} to trace {self.trace_id}"

    def ends(self, max_days):
        """When the link stops working under today's longest allowed life."""
        return min(self.expires, self.created + timedelta(days=max_days))
