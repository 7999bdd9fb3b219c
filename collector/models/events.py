"""Events: topics, the stored messages (partitioned by day), their per-minute rollup, and
the ranges retention dropped. `collector.events.writer` is their only writer and
`collector.events.readers` holds the queries that pages and the API share."""
from django.db import models

from collector.models.brokers import Broker

__all__ = ["Topic", "Event", "EventRollup", "EventHourRollup", "PrunedRange", "PublishToken"]


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

    @property
    def position(self):
        """The sequence as shown in lists: a Kafka record past partition 0 packs its
        partition in the high bits (collector.brokers.kafka), shown as partition/offset."""
        if self.seq is not None and self.seq >> 48:
            return f"{self.seq >> 48}/{self.seq & (2**48 - 1)}"
        return self.seq

    @property
    def partition_offset(self):
        """(partition, offset) of a Kafka record."""
        return self.seq >> 48, self.seq & (2**48 - 1)


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


class EventHourRollup(models.Model):
    """Per hour: the same counts as EventRollup, written by the same statement, so that a
    window reads one row per hour for its whole hours and minute rows only at its edges."""

    hour = models.DateTimeField()
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
                fields=["hour", "broker", "subject", "producer", "type", "version"], name="hour_rollup_key"
            )
        ]
        indexes = [models.Index(fields=["subject", "hour"], name="hour_rollup_subject"),
                   models.Index(fields=["hour"], name="hour_rollup_hour")]


class PrunedRange(models.Model):
    """A partition dropped by retention, so a link into it answers 410 with the date."""

    table = models.CharField(max_length=64)
    start = models.DateTimeField()
    end = models.DateTimeField()
    min_id = models.BigIntegerField(null=True)
    max_id = models.BigIntegerField(null=True)
    pruned_at = models.DateTimeField(auto_now_add=True)


class PublishToken(models.Model):
    """A publish form that has been submitted. Each rendered form carries a signed one-time
    token; the message's `Nats-Msg-Id` derives from it, and this row (unique) makes a
    resubmitted form send nothing."""

    nonce = models.CharField(max_length=64, unique=True)
    subject = models.TextField()
    audit = models.ForeignKey("collector.AuditEntry", null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
