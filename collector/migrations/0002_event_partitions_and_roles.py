from django.db import migrations

EVENT_TABLE = """
CREATE SEQUENCE collector_event_id_seq;
CREATE TABLE collector_event (
    id bigint NOT NULL DEFAULT nextval('collector_event_id_seq'),
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    broker_id bigint NOT NULL,
    subject text NOT NULL,
    stream text NOT NULL DEFAULT '',
    seq bigint NOT NULL,
    headers jsonb,
    raw bytea NOT NULL,
    size integer NOT NULL,
    truncated boolean NOT NULL DEFAULT false,
    sha256 bytea,
    format text NOT NULL,
    event_id text,
    type text,
    version text,
    producer text,
    key text,
    trace_id text,
    span_id text,
    payload jsonb,
    note text,
    PRIMARY KEY (id, ts),
    -- A replayed message has the same stream, sequence and broker time: stored once.
    UNIQUE (broker_id, stream, seq, ts)
) PARTITION BY RANGE (ts);
ALTER SEQUENCE collector_event_id_seq OWNED BY collector_event.id;
CREATE INDEX collector_event_subject_ts ON collector_event (subject, ts DESC, id DESC);
CREATE INDEX collector_event_ts ON collector_event (ts DESC, id DESC);
CREATE INDEX collector_event_event_id ON collector_event (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX collector_event_key ON collector_event (key) WHERE key IS NOT NULL;
CREATE INDEX collector_event_trace ON collector_event (trace_id) WHERE trace_id IS NOT NULL;
"""

ROLES = ["viewer", "operator", "admin"]


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("collector", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunSQL(EVENT_TABLE, "DROP TABLE collector_event;"),
        migrations.RunPython(create_roles, migrations.RunPython.noop),
    ]
