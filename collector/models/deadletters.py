"""The store's dead-letter tables: what died, why, and every attempt to re-drive it."""
from django.conf import settings
from django.db import models

__all__ = ["DeadLetterSettings", "DeadLetter", "RetryJob", "RetryAttempt", "DeadLetterRollup", "DeadLetterHourRollup",
           "DeadLetterThreshold", "DeadLetterAlert"]


class DeadLetterSettings(models.Model):
    """How dead letters are recognised, kept and re-driven: a single row, edited in the admin."""

    dlq_patterns = models.TextField(
        default="*.dlq\n>.dlq\ndlq.>\n*.deadletter\n>.deadletter",
        help_text="Subjects that carry dead letters, one a line. NATS wildcards; a leading > matches one or more "
                  "tokens, so '>.dlq' is any subject ending in .dlq. What the wildcards matched is the original topic "
                  "unless a header names it.",
    )
    topic_headers = models.TextField(
        default="X-Original-Topic\nX-Original-Subject\nMicro-Topic",
        help_text="Header names that carry the original topic, one a line, first found wins.",
    )
    error_headers = models.TextField(default="X-Error\nX-Exception-Message\nError", help_text="Header names for the error text.")
    attempts_headers = models.TextField(
        default="X-Attempts\nX-Retry-Count\nX-Deliveries", help_text="Header names for the delivery count."
    )
    kafka_dlt_patterns = models.TextField(
        default="*.DLT\n*-dlt\n*-dlq\n*.dlq\ndlq.*\n*.deadletter",
        help_text="Kafka topics that carry dead letters, one a line; * stands for the original topic (Spring Kafka "
                  "names its dead-letter topic '<topic>.DLT'). Spring Kafka's kafka_dlt-* and Kafka Connect's "
                  "__connect.errors.* headers name the original topic, partition, offset and error where present.",
    )
    retention_days = models.PositiveIntegerField(default=30, help_text="Dead letters older than this are deleted.")
    audit_retention_days = models.PositiveIntegerField(default=180, help_text="Audit entries older than this are deleted.")
    bulk_rate = models.PositiveIntegerField(default=2000, help_text="Bulk retries send at most this many messages a second.")
    allow_private_webhooks = models.BooleanField(
        "allow private webhook targets", default=False,
        help_text="Let alert webhooks reach loopback and private addresses (127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, "
                  "192.168.0.0/16, fc00::/7 …). Link-local addresses and cloud metadata hosts are refused always.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "dead-letter settings"

    def __str__(self):
        return "Dead-letter settings"

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]


class DeadLetter(models.Model):
    """A message a consumer gave up on. `key` makes capture idempotent: a replayed
    advisory or a redelivered DLQ message is stored once."""

    class Reason(models.TextChoices):
        MAX_DELIVERIES = "max_deliveries", "max deliveries"
        TERMINATED = "terminated", "terminated by consumer"
        REJECTED = "rejected", "rejected by consumer"
        DECODE_FAILURE = "decode_failure", "decode failure"
        DLQ_SUBJECT = "dlq_subject", "sent to a DLQ subject"
        EXPIRED = "expired", "expired (message or queue TTL)"
        MAXLEN = "maxlen", "dropped by a queue length limit"

    class Status(models.TextChoices):
        NEW = "new", "new"
        RETRYING = "retrying", "retrying"
        RETRIED = "retried", "retried"
        RESOLVED = "resolved", "resolved"
        DISCARDED = "discarded", "discarded"
        UNKNOWN = "unknown", "outcome unknown"

    # Statuses a retry may start from: a later, deliberate retry of a retried one is a new attempt.
    RETRYABLE = (Status.NEW, Status.RETRIED)
    # `unknown`: the last attempt may or may not be on the stream. An operator checks it again
    # (it is looked for, and sent only if absent), sends it as a new message, or closes it.
    OPEN = (Status.NEW, Status.RETRIED, Status.UNKNOWN)

    key = models.CharField(max_length=400, unique=True)
    broker = models.ForeignKey("collector.Broker", on_delete=models.CASCADE)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    subject = models.TextField(help_text="The original subject: where a retry sends it.")
    dlq_subject = models.TextField(blank=True, default="", help_text="The DLQ subject it arrived on, if any.")
    stream = models.TextField(blank=True, default="")
    consumer = models.TextField(blank=True, default="")
    stream_seq = models.BigIntegerField(null=True)
    message_key = models.TextField(null=True, blank=True,
                                   help_text="The message's key (Kafka): a retry sends it with it, so it lands in the "
                                             "same partition.")
    event_id = models.BigIntegerField(null=True, help_text="The stored event (no foreign key: events are partitioned).")
    headers = models.JSONField(null=True)
    raw = models.BinaryField(null=True, help_text="The message bytes; empty when the broker no longer had them.")
    size = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")
    note = models.TextField(blank=True, default="")
    deliveries = models.IntegerField(null=True)
    trace_id = models.TextField(blank=True, default="")
    span_id = models.TextField(blank=True, default="")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    attempt = models.IntegerField(default=0, help_text="Retries claimed so far; a retry form carries the value it saw.")
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="died_again")
    status_reason = models.TextField(blank=True, default="")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["-first_seen", "-id"], name="deadletter_time"),
            models.Index(fields=["subject", "-first_seen"], name="deadletter_subject"),
            models.Index(fields=["consumer", "-first_seen"], name="deadletter_consumer"),
            models.Index(fields=["reason", "-first_seen"], name="deadletter_reason"),
            models.Index(fields=["status", "-first_seen"], name="deadletter_status"),
        ]
        permissions = [("retry_deadletter", "Can retry, discard and resolve dead letters")]

    def __str__(self):
        return f"dead letter {self.pk} on {self.subject}"

    @property
    def retryable(self):
        return self.status in self.RETRYABLE and self.raw is not None

    @property
    def outcome_unknown(self):
        return self.status == self.Status.UNKNOWN and self.raw is not None


class DeadLetterRollup(models.Model):
    """Dead letters per minute × topic × consumer × reason, kept by capture, so the
    grouped counts and trends on /dlq never scan the dead letters themselves."""

    minute = models.DateTimeField()
    subject = models.TextField()
    consumer = models.TextField(default="")
    reason = models.CharField(max_length=32)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "subject", "consumer", "reason"], name="deadletterrollup_key")
        ]
        indexes = [models.Index(fields=["minute"], name="deadletterrollup_minute")]


class DeadLetterHourRollup(models.Model):
    """Per hour: the same counts as DeadLetterRollup, added by the same statement, so that a
    long window reads one row per hour for its whole hours and minute rows only at its edges."""

    hour = models.DateTimeField()
    subject = models.TextField()
    consumer = models.TextField(default="")
    reason = models.CharField(max_length=32)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "subject", "consumer", "reason"], name="deadletterhourrollup_key")
        ]
        indexes = [models.Index(fields=["hour"], name="deadletterhourrollup_hour")]


class RetryJob(models.Model):
    """A bulk retry (a selection or everything matching a filter) run by one Celery task."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        STALLED = "stalled", "stalled (its worker stopped)"

    # States a delivered job task takes up: a stalled or running job whose worker died resumes.
    RESUMABLE = (State.QUEUED, State.RUNNING, State.STALLED)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    selection = models.JSONField(default=dict, help_text="{'ids': {id: attempt}} or {'filters': {...}}")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    total = models.IntegerField(default=0)
    sent = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    unknown = models.IntegerField(default=0, help_text="Sent, but whether the stream kept them is unknown.")
    error = models.TextField(blank=True, default="")
    finished = models.DateTimeField(null=True)
    heartbeat = models.DateTimeField(null=True, help_text="Last progress of the worker running it.")

    @property
    def done(self):
        return self.sent + self.skipped + self.failed + self.unknown

    @property
    def percent(self):
        return 100 if not self.total else min(100, round(100 * self.done / self.total))


class RetryAttempt(models.Model):
    """One claimed retry of a dead letter: what was sent, and what became of it."""

    class Outcome(models.TextChoices):
        QUEUED = "queued", "queued"
        SENDING = "sending", "sending"
        SENT = "sent", "republished"
        DUPLICATE = "duplicate", "already republished (deduplicated)"
        FOUND = "found", "already on the stream (found by its provenance)"
        FAILED = "failed", "failed"
        UNKNOWN = "unknown", "outcome unknown"

    # Outcomes that leave the message on the stream once.
    LANDED = (Outcome.SENT, Outcome.DUPLICATE, Outcome.FOUND)

    class FollowUp(models.TextChoices):
        PENDING = "pending", "waiting for the consumer"
        CONSUMED = "consumed", "consumed"
        DIED_AGAIN = "died_again", "died again"
        UNKNOWN = "unknown", "unknown"

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="attempts")
    attempt = models.IntegerField()
    job = models.ForeignKey(RetryJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    msg_id = models.CharField(max_length=200, help_text="Nats-Msg-Id: JetStream drops a second copy.")
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True)
    first_sent_at = models.DateTimeField(
        null=True, help_text="When a worker first began sending it: from then on it may be on the stream.")
    sender = models.IntegerField(
        null=True, help_text="The advisory lock the sending worker holds; a free lock means the worker is gone.")
    subject = models.TextField()
    edited_headers = models.JSONField(null=True, help_text="An admin's edited headers, sent instead of the original.")
    edited_raw = models.BinaryField(null=True, help_text="An admin's edited payload, sent instead of the original.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.QUEUED)
    error = models.TextField(blank=True, default="")
    stream = models.TextField(blank=True, default="")
    stream_seq = models.BigIntegerField(null=True, help_text="Where the republished message landed (publish ack).")
    followup = models.CharField(max_length=16, choices=FollowUp.choices, default=FollowUp.PENDING)
    followed_at = models.DateTimeField(null=True)
    next_dead_letter = models.ForeignKey(DeadLetter, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dead_letter", "attempt"], name="retryattempt_once")]
        indexes = [models.Index(fields=["followup", "outcome"], name="retryattempt_follow")]


class DeadLetterThreshold(models.Model):
    """Alert when more than `count` dead letters arrive within `minutes` on matching topics/consumers."""

    subject_pattern = models.CharField(max_length=300, default=">", help_text="NATS wildcard pattern of original topics.")
    consumer = models.CharField(max_length=200, blank=True, default="", help_text="Only this consumer (blank: any).")
    count = models.PositiveIntegerField(default=10)
    minutes = models.PositiveIntegerField(default=5)
    webhook = models.URLField(blank=True, default="", help_text="POSTed a JSON summary when the threshold is crossed "
                                                                "(by the worker; link-local and metadata hosts refused).")
    enabled = models.BooleanField(default=True)

    def __str__(self):
        return f"> {self.count} in {self.minutes} min on {self.subject_pattern} {self.consumer}".strip()

    def clean(self):
        from django.core.exceptions import ValidationError

        from collector.deadletters.webhooks import static_refusal

        reason = static_refusal(self.webhook) if self.webhook else None
        if reason:
            raise ValidationError({"webhook": reason})


class DeadLetterAlert(models.Model):
    """A threshold crossed: recorded once per crossing (the threshold and the start of its
    window are unique together), then posted to its webhook by the worker."""

    class Delivery(models.TextChoices):
        NONE = "none", "no webhook"
        PENDING = "pending", "queued for the worker"
        SENDING = "sending", "sending"
        POSTED = "posted", "posted"
        FAILED = "failed", "not posted"
        REFUSED = "refused", "refused (target not allowed)"

    threshold = models.ForeignKey(DeadLetterThreshold, on_delete=models.CASCADE)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    window_start = models.DateTimeField(
        null=True, help_text="The threshold's window (aligned to its length) in which it was crossed.")
    count = models.IntegerField()
    detail = models.JSONField(default=dict)
    webhook = models.URLField(blank=True, default="", help_text="Where the alert goes, as set when it was raised.")
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.NONE)
    queued_at = models.DateTimeField(null=True, help_text="Last handed to the worker.")
    delivered_at = models.DateTimeField(null=True)
    notified = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["threshold", "window_start"], name="deadletteralert_once"),
        ]
        indexes = [models.Index(fields=["delivery", "queued_at"], name="deadletteralert_delivery")]
