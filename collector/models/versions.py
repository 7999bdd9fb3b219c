# ruff: noqa: RUF012
"""Event versions: what the collector learns about each type's versions. Every table here
merges commutatively (counts add up, first/last times take min/max, sets take unions), so
several collectors writing the same keys never overwrite each other.
`collector.versions.writer` (after each committed batch) and `collector.versions.linker`
(consumers and producer instances, from spans, dead letters and ack floors) are their only
writers; `collector.versions.readers` holds the queries pages and the API share."""
from django.db import models

__all__ = [
    "VersionConsumer",
    "VersionCursor",
    "VersionDrift",
    "VersionInstance",
    "VersionProducer",
    "VersionRollup",
    "VersionRollupDay",
    "VersionShape",
    "VersionStream",
]


class VersionShape(models.Model):
    """One payload shape (field paths and their types) of a type and version, with how many
    payloads had it and a capped copy of the first one: the version's schema is the union
    of its shapes. The example outlives event retention; its event link may answer 410."""

    type = models.TextField()
    version = models.TextField(default="")
    fingerprint = models.CharField(max_length=32)
    paths = models.JSONField(help_text="{path: [json types]}")
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    example = models.JSONField(null=True, help_text="The first payload of this shape (capped in size).")
    example_event_id = models.BigIntegerField(null=True)
    example_ts = models.DateTimeField(null=True)
    example_subject = models.TextField(default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "version", "fingerprint"], name="versionshape_key")]


class VersionDrift(models.Model):
    """Payloads of one shape that contradicted the established schema of their version
    when the shape first appeared, with the first and the latest such event."""

    type = models.TextField()
    version = models.TextField(default="")
    fingerprint = models.CharField(max_length=32)
    reasons = models.JSONField(default=list)
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    first_event_id = models.BigIntegerField(null=True)
    last_event_id = models.BigIntegerField(null=True)
    subject = models.TextField(default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "version", "fingerprint"], name="versiondrift_key")]
        indexes = [models.Index(fields=["-last_seen"], name="versiondrift_last")]


class _Rollup(models.Model):
    bucket = models.DateTimeField()
    type = models.TextField()
    version = models.TextField(default="")
    producer = models.TextField(default="")
    subject = models.TextField()
    count = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class VersionRollup(_Rollup):
    """Per hour: type x version x producer x subject counts of stored events, with the first
    and last message's time. The collector writes these after each batch; the daily table and
    the producers are derived from them (collector.versions.linker)."""

    first_seen = models.DateTimeField(null=True)
    last_seen = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "type", "version", "producer", "subject"],
                                               name="versionrollup_key")]
        indexes = [models.Index(fields=["bucket"], name="versionrollup_bucket"),
                   models.Index(fields=["type", "bucket"], name="versionrollup_type")]


class VersionRollupDay(_Rollup):
    """Per day (UTC): the same counts, for long windows, summed from the hourly rows."""

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "type", "version", "producer", "subject"],
                                               name="versionrollupday_key")]
        indexes = [models.Index(fields=["bucket"], name="versionrollupday_bucket"),
                   models.Index(fields=["type", "bucket"], name="versionrollupday_type")]


class VersionProducer(models.Model):
    """Each producer of a type and version: first and last message (all time), derived from
    the hourly counts."""

    type = models.TextField()
    version = models.TextField(default="")
    producer = models.TextField(default="")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "version", "producer"], name="versionproducer_key")]


class VersionStream(models.Model):
    """Where a type and version sit on a JetStream stream: its lowest and highest sequence
    per subject, so consumer ack floors can be compared with them."""

    broker_id = models.BigIntegerField()
    stream = models.TextField()
    subject = models.TextField()
    type = models.TextField()
    version = models.TextField(default="")
    min_seq = models.BigIntegerField()
    max_seq = models.BigIntegerField()
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broker_id", "stream", "subject", "type", "version"],
                                               name="versionstream_key")]


class VersionInstance(models.Model):
    """A producer instance (from its producer spans): service, service version, instance id."""

    type = models.TextField()
    version = models.TextField(default="")
    service = models.TextField()
    service_version = models.TextField(default="")
    instance = models.TextField(default="")
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "version", "service", "service_version", "instance"],
                                               name="versioninstance_key")]


class VersionConsumer(models.Model):
    """A consumer of a type and version: what its consumer spans say (processed, failed),
    its dead letters, and when its ack floor first passed a message of the version."""

    type = models.TextField()
    version = models.TextField(default="")
    consumer = models.TextField()
    processed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    dead_letters = models.BigIntegerField(default=0)
    first_processed = models.DateTimeField(null=True)
    last_processed = models.DateTimeField(null=True)
    last_failed = models.DateTimeField(null=True)
    last_dead_letter = models.DateTimeField(null=True)
    floor_passed = models.DateTimeField(null=True, help_text="When its ack floor was first seen past a message of it.")
    stream = models.TextField(default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["type", "version", "consumer"], name="versionconsumer_key")]


class VersionCursor(models.Model):
    """How far the linker has read spans and dead letters (one linker at a time)."""

    name = models.CharField(max_length=32, unique=True)
    position = models.TextField(default="")
    updated = models.DateTimeField(auto_now=True)
