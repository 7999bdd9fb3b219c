"""Topology: the observed service graph. Edges seen in spans are kept per minute
(`TopologyEdgeRollup`), services' instances from registration events (`ServiceInstance`),
the span pass's position (`TopologyCursor`) and the settings operators edit.
`collector.topology.writer` is their only writer; `collector.topology.readers` builds the
graph from these and from the rollups other rooms keep (events, consumers, dead letters),
never from raw events.
"""
import re

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models

__all__ = ["ServiceInstance", "TopologyCursor", "TopologyEdgeRollup", "TopologyPublishRollup", "TopologySettings"]


class TopologyEdgeRollup(models.Model):
    """Per minute (and per 5 and 15 minutes and hour, `width`): an edge seen in spans. `kind` is `publish` (a PRODUCER span: service ->
    topic), `consume` (a CONSUMER span: topic -> service, with its consumer group when the
    span names one) or `call` (a client/server parent-child pair across services). Counts
    add: several collectors merge their rows, none overwrites another's."""

    width = models.PositiveSmallIntegerField(default=1, help_text="Minutes the row covers: 1, 5, 15 or 60.")
    minute = models.DateTimeField(help_text="Start of the row's span of time.")
    kind = models.CharField(max_length=8)
    source = models.TextField()
    target = models.TextField()
    group = models.TextField(default="")
    count = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    duration_sum_us = models.BigIntegerField(default=0)
    buckets = ArrayField(models.BigIntegerField(), default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["width", "minute", "kind", "source", "target", "group"],
                                               name="topologyedge_key")]
        indexes = [models.Index(fields=["width", "minute"], name="topologyedge_minute")]


class TopologyPublishRollup(models.Model):
    """Per 5 minutes and per hour (`width`): the events' per-minute rollup again (topic x
    producer x type x version), so a long window reads the publish edges from few rows. Added
    after each commit from the batch's new rows; counts add, several collectors merge."""

    width = models.PositiveSmallIntegerField(help_text="Minutes the row covers: 5, 15 or 60.")
    minute = models.DateTimeField(help_text="Start of the row's span of time.")
    broker = models.ForeignKey("collector.Broker", on_delete=models.CASCADE)
    subject = models.TextField()
    producer = models.TextField(default="")
    type = models.TextField(default="")
    version = models.TextField(default="")
    count = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["width", "minute", "broker", "subject", "producer", "type", "version"],
                                               name="topologypublish_key")]
        indexes = [models.Index(fields=["width", "minute"], name="topologypublish_minute")]


class ServiceInstance(models.Model):
    """One instance (node) of a service version, from registration events on
    `service.events`: when it was first and last announced, and when it deregistered."""

    service = models.TextField()
    version = models.TextField(default="")
    node = models.TextField(default="")
    address = models.TextField(default="")
    instances = models.PositiveIntegerField(default=1, help_text="Instances this row stands for (1 per node).")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    deregistered = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "version", "node"], name="serviceinstance_key")]
        indexes = [models.Index(fields=["last_seen"], name="serviceinstance_seen")]


class TopologyCursor(models.Model):
    """How far the span pass has read (by span receive time). Taken FOR UPDATE in the
    transaction that adds the edges, so each span is counted once however many collectors run."""

    name = models.CharField(max_length=32, unique=True)
    position = models.DateTimeField()


class TopologySettings(models.Model):
    """How the graph groups and colours: a single row."""

    namespace_pattern = models.CharField(
        max_length=200, blank=True, default="",
        help_text="Regular expression whose first group is a service's namespace (blank: the part of the "
                  "name before its last dot, as in go.micro.srv.order).")
    warn_error_rate = models.FloatField(default=0.01, help_text="A node or edge is amber above this error share.")
    bad_error_rate = models.FloatField(default=0.05, help_text="A node or edge is red above this error share.")
    collapse_above = models.PositiveIntegerField(
        default=60, help_text="With more services than this, the page starts with namespaces collapsed.")

    class Meta:
        verbose_name = verbose_name_plural = "topology settings"

    def __str__(self):
        return "Topology settings"

    def clean(self):
        if self.namespace_pattern:
            try:
                re.compile(self.namespace_pattern)
            except re.error as error:
                raise ValidationError({"namespace_pattern": f"not a regular expression: {error}"}) from None
        if self.warn_error_rate > self.bad_error_rate:
            raise ValidationError({"warn_error_rate": "must not be above the red threshold"})

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]
