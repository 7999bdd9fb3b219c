import django.contrib.postgres.fields
import django.contrib.postgres.indexes
from django.db import migrations, models

# Day-partitioned like collector_event: retention drops whole days. A span sent twice
# (an exporter's retry, a replayed batch) has the same key and is stored once.
SPAN_TABLE = """
CREATE TABLE collector_span (
    trace_id text NOT NULL,
    span_id text NOT NULL,
    parent_span_id text,
    service text NOT NULL,
    operation text NOT NULL,
    kind text NOT NULL DEFAULT '',
    start timestamptz NOT NULL,
    duration_us bigint NOT NULL,
    status_code text NOT NULL DEFAULT 'unset',
    status_message text NOT NULL DEFAULT '',
    error boolean NOT NULL DEFAULT false,
    tags jsonb NOT NULL DEFAULT '{}',
    resource jsonb NOT NULL DEFAULT '{}',
    events jsonb NOT NULL DEFAULT '[]',
    links jsonb NOT NULL DEFAULT '[]',
    scope text NOT NULL DEFAULT '',
    message_id text,
    destination text,
    notes text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, span_id, start)
) PARTITION BY RANGE (start);
CREATE INDEX collector_span_service_start ON collector_span (service, start DESC);
CREATE INDEX collector_span_start ON collector_span (start DESC);
CREATE INDEX collector_span_message_id ON collector_span (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX collector_span_tags ON collector_span USING gin (tags jsonb_path_ops);
-- Few spans have links: a partial index finds those that point into a given trace.
CREATE INDEX collector_span_links ON collector_span USING gin (links jsonb_path_ops) WHERE links <> '[]';
"""

SPAN_FIELDS = [
    ("trace_id", models.TextField(primary_key=True, serialize=False)),
    ("span_id", models.TextField()),
    ("parent_span_id", models.TextField(null=True)),
    ("service", models.TextField()),
    ("operation", models.TextField()),
    ("kind", models.TextField()),
    ("start", models.DateTimeField()),
    ("duration_us", models.BigIntegerField()),
    ("status_code", models.TextField()),
    ("status_message", models.TextField()),
    ("error", models.BooleanField()),
    ("tags", models.JSONField()),
    ("resource", models.JSONField()),
    ("events", models.JSONField()),
    ("links", models.JSONField()),
    ("scope", models.TextField()),
    ("message_id", models.TextField(help_text="messaging.message.id, to find the event it carried", null=True)),
    ("destination", models.TextField(help_text="messaging.destination.name", null=True)),
    ("notes", models.TextField(null=True)),
    ("received_at", models.DateTimeField()),
]


class Migration(migrations.Migration):
    dependencies = [("collector", "0003_audit")]

    operations = [
        migrations.RunSQL(SPAN_TABLE, "DROP TABLE collector_span;"),
        migrations.CreateModel(
            name="Span",
            fields=SPAN_FIELDS,
            options={"db_table": "collector_span", "managed": False},
        ),
        migrations.CreateModel(
            name="TraceSettings",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("span_retention_days", models.PositiveIntegerField(default=7)),
                ("share_links", models.BooleanField(default=True, help_text="Operators may make signed read-only links to one trace.")),
                ("share_link_max_days", models.PositiveIntegerField(default=7, help_text="Longest life of a share link.")),
                ("max_body_bytes", models.PositiveIntegerField(default=16777216, help_text="Larger span payloads get 413.")),
            ],
            options={"verbose_name": "trace settings", "verbose_name_plural": "trace settings"},
        ),
        migrations.CreateModel(
            name="SpanOperation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("service", models.TextField()),
                ("operation", models.TextField()),
                ("kind", models.TextField(default="")),
                ("last_seen", models.DateTimeField()),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("service", "operation", "kind"), name="spanoperation_key")],
            },
        ),
        migrations.CreateModel(
            name="SpanRollup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("minute", models.DateTimeField()),
                ("service", models.TextField()),
                ("operation", models.TextField()),
                ("count", models.BigIntegerField(default=0)),
                ("errors", models.BigIntegerField(default=0)),
                ("duration_sum_us", models.BigIntegerField(default=0)),
                ("buckets", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), default=list, size=None)),
            ],
            options={
                "indexes": [models.Index(fields=["service", "minute"], name="spanrollup_service")],
                "constraints": [models.UniqueConstraint(fields=("minute", "service", "operation"), name="spanrollup_key")],
            },
        ),
        migrations.CreateModel(
            name="TraceSummary",
            fields=[
                ("trace_id", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("start", models.DateTimeField()),
                ("end", models.DateTimeField()),
                ("root_service", models.TextField(default="")),
                ("root_operation", models.TextField(default="")),
                ("span_count", models.IntegerField(default=0)),
                ("error_count", models.IntegerField(default=0)),
                ("services", django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), default=list, size=None)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["-start"], name="tracesummary_start"),
                    django.contrib.postgres.indexes.GinIndex(fields=["services"], name="tracesummary_services"),
                ],
            },
        ),
    ]
