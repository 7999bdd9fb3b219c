"""Consumer lag: every consumer the sampler has seen (with its latest figures), its samples
(partitioned by day, kept a day), per-minute and per-hour rollups, the events on its
timeline, threshold crossings, and the settings and thresholds operators edit in the admin.
`collector.lag.writer` is their only writer; `collector.lag.readers` holds the queries.

A consumer is keyed by broker, scope and name: a JetStream stream and consumer today; a
RabbitMQ vhost and queue or a Kafka topic and consumer group later."""
from django.db import models

from collector.models.brokers import Broker

__all__ = ["LagSettings", "LagThreshold", "Consumer", "LagSample", "LagRollup", "LagRollupHour", "ConsumerEvent",
           "LagCrossing", "LagRound", "DEFAULT_THRESHOLDS"]

# Used where no threshold in the admin applies to a consumer.
DEFAULT_THRESHOLDS = {"max_lag": 1000, "max_oldest_age": 300, "stalled_after": 120, "growing_after": 300}


class LagSettings(models.Model):
    """How consumers are sampled and how long their history is kept: a single row."""

    enabled = models.BooleanField(default=True, help_text="Sample consumer lag in the collector.")
    interval_seconds = models.PositiveIntegerField(default=10, help_text="Seconds between two samples of every consumer.")
    raw_retention_hours = models.PositiveIntegerField(default=24, help_text="Raw samples older than this are dropped.")
    rollup_retention_days = models.PositiveIntegerField(
        default=30, help_text="Per-minute and per-hour rollups older than this are deleted.")

    class Meta:
        verbose_name = verbose_name_plural = "consumer lag settings"

    def __str__(self):
        return "Consumer lag settings"

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]


class LagThreshold(models.Model):
    """When a consumer counts as lagging, stalled or growing. The most specific enabled
    threshold applies: one for the consumer, else one for its stream, else one for all."""

    stream = models.CharField(max_length=200, blank=True, default="", help_text="Stream (blank: every stream).")
    consumer = models.CharField(max_length=200, blank=True, default="",
                                help_text="Consumer name (blank: every consumer of the stream).")
    max_lag = models.PositiveIntegerField(default=DEFAULT_THRESHOLDS["max_lag"],
                                          help_text="Lagging above this many unprocessed messages.")
    max_oldest_age = models.PositiveIntegerField(default=DEFAULT_THRESHOLDS["max_oldest_age"],
                                                 help_text="Lagging when the oldest unprocessed message is older (seconds).")
    stalled_after = models.PositiveIntegerField(default=DEFAULT_THRESHOLDS["stalled_after"],
                                                help_text="Stalled when messages wait and nothing was acked for this long (seconds).")
    growing_after = models.PositiveIntegerField(default=DEFAULT_THRESHOLDS["growing_after"],
                                                help_text="Growing when the lag has risen for this long (seconds).")
    webhook = models.URLField(blank=True, default="", help_text="POSTed a JSON summary of every crossing.")
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "consumer"], name="lagthreshold_target")]

    def __str__(self):
        target = f"{self.stream or 'every stream'}/{self.consumer or '*'}"
        return f"{target}: lag > {self.max_lag}, oldest > {self.max_oldest_age} s"


class Consumer(models.Model):
    """A consumer as last sampled. The latest figures live here so the list of every
    consumer never reads the samples; `gone_at` marks one that disappeared."""

    class Status(models.TextChoices):
        OK = "ok", "ok"
        LAGGING = "lagging", "lagging"
        STALLED = "stalled", "stalled"
        GROWING = "growing", "growing"
        GONE = "gone", "gone"

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE)
    stream = models.CharField(max_length=200, help_text="JetStream stream (a RabbitMQ vhost or Kafka topic later).")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, default="jetstream")
    observer = models.BooleanField(default=False, help_text="Eventscope's own observer: shown apart.")
    config = models.JSONField(default=dict)
    created_at = models.DateTimeField(null=True, help_text="When the broker created it.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    gone_at = models.DateTimeField(null=True)
    sampled_at = models.DateTimeField(null=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    status_since = models.DateTimeField(null=True)
    lag = models.BigIntegerField(null=True)
    pending = models.BigIntegerField(null=True)
    ack_pending = models.BigIntegerField(null=True)
    redelivered = models.BigIntegerField(null=True)
    waiting = models.BigIntegerField(null=True)
    oldest_age = models.FloatField(null=True, help_text="Seconds.")
    consume_rate = models.FloatField(null=True)
    produce_rate = models.FloatField(null=True)
    drain_seconds = models.FloatField(null=True)
    growing = models.BooleanField(default=False)
    note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broker", "stream", "name"], name="consumer_key")]
        indexes = [models.Index(fields=["observer", "stream", "name"], name="consumer_stream")]

    def __str__(self):
        return f"{self.stream}/{self.name}"


class LagSample(models.Model):
    """One reading of one consumer. Partitioned by day on `at` (SQL in the migration);
    (consumer, at) is the key. A consumer gone or not read has a sample that says so."""

    consumer_id = models.BigIntegerField(primary_key=True)  # not unique alone; Django needs a primary key
    at = models.DateTimeField()
    state = models.CharField(max_length=8)  # read | gone | unread
    pending = models.BigIntegerField(null=True)
    ack_pending = models.BigIntegerField(null=True)
    redelivered = models.BigIntegerField(null=True)
    waiting = models.BigIntegerField(null=True)
    delivered_seq = models.BigIntegerField(null=True)
    ack_floor_seq = models.BigIntegerField(null=True)
    stream_first_seq = models.BigIntegerField(null=True)
    stream_last_seq = models.BigIntegerField(null=True)
    last_active = models.DateTimeField(null=True)
    oldest_ts = models.DateTimeField(null=True)
    oldest_source = models.CharField(max_length=8)  # store | stream | ''
    consume_rate = models.FloatField(null=True)
    produce_rate = models.FloatField(null=True)
    drain_seconds = models.FloatField(null=True)
    growing = models.BooleanField()
    note = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "collector_lagsample"

    @property
    def lag(self):
        if self.pending is None:
            return None
        return self.pending + (self.ack_pending or 0)

    @property
    def oldest_age(self):
        # A message stored during the round can carry a time a little after the round's: never negative.
        return max(0.0, (self.at - self.oldest_ts).total_seconds()) if self.oldest_ts else (
            0.0 if self.pending is not None else None)


class _Rollup(models.Model):
    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE)
    samples = models.IntegerField(default=0)
    unread = models.IntegerField(default=0, help_text="Samples that could not be read or found the consumer gone.")
    lag_sum = models.BigIntegerField(default=0)
    lag_max = models.BigIntegerField(default=0)
    lag_last = models.BigIntegerField(default=0)
    ack_pending_max = models.BigIntegerField(default=0)
    redelivered_max = models.BigIntegerField(default=0)
    oldest_age_max = models.FloatField(default=0)

    class Meta:
        abstract = True


class LagRollup(_Rollup):
    """Per consumer and minute, kept up to date by the sampler."""

    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "minute"], name="lagrollup_key")]
        indexes = [models.Index(fields=["minute"], name="lagrollup_minute")]


class LagRollupHour(_Rollup):
    """Per consumer and hour, for long windows."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "hour"], name="lagrolluphour_key")]
        indexes = [models.Index(fields=["hour"], name="lagrolluphour_hour")]


class ConsumerEvent(models.Model):
    """Something on a consumer's timeline that is not a threshold crossing: it was reset
    (recreated, or its delivered sequence went back), its stream was purged, it appeared."""

    class Kind(models.TextChoices):
        APPEARED = "appeared", "appeared"
        RESET = "reset", "reset"
        PURGE = "purge", "stream purged"

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    detail = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["consumer", "-at"], name="consumerevent_time")]


class LagCrossing(models.Model):
    """A consumer's status changed across a threshold: recorded, and posted to the
    threshold's webhook when it has one."""

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="crossings")
    at = models.DateTimeField()
    status_from = models.CharField(max_length=16)
    status_to = models.CharField(max_length=16)
    lag = models.BigIntegerField(null=True)
    oldest_age = models.FloatField(null=True)
    threshold = models.ForeignKey(LagThreshold, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField(blank=True, default="")
    notified = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["consumer", "-at"], name="lagcrossing_time"),
                   models.Index(fields=["-at"], name="lagcrossing_at")]


class LagRound(models.Model):
    """One sampling round: who sampled, when, how many consumers, how long it took."""

    collector = models.CharField(max_length=200)
    started = models.DateTimeField()
    finished = models.DateTimeField()
    consumers = models.IntegerField(default=0)
    unread_streams = models.IntegerField(default=0)
    wall_ms = models.FloatField(default=0)
    cpu_ms = models.FloatField(default=0)
    note = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["-started"], name="laground_started")]
