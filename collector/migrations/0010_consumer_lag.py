# Consumer lag: consumers, their samples (day-partitioned like events and spans), rollups,
# timeline events, threshold crossings, sampling rounds, settings and thresholds.

import django.db.models.deletion
from django.db import migrations, models

# One sample per consumer per interval; retention drops whole days. No foreign key: the
# table is partitioned, and a consumer's samples go with its day, not with the consumer.
SAMPLE_TABLE = """
CREATE TABLE collector_lagsample (
    consumer_id bigint NOT NULL,
    at timestamptz NOT NULL,
    state text NOT NULL,
    pending bigint,
    ack_pending bigint,
    redelivered bigint,
    waiting bigint,
    delivered_seq bigint,
    ack_floor_seq bigint,
    stream_first_seq bigint,
    stream_last_seq bigint,
    last_active timestamptz,
    oldest_ts timestamptz,
    oldest_source text NOT NULL DEFAULT '',
    consume_rate double precision,
    produce_rate double precision,
    drain_seconds double precision,
    growing boolean NOT NULL DEFAULT false,
    note text,
    PRIMARY KEY (consumer_id, at)
) PARTITION BY RANGE (at);
-- Samples arrive in time order: a BRIN index finds a minute's samples for the rollups.
CREATE INDEX collector_lagsample_at ON collector_lagsample USING brin (at);
"""

# Every consumer's row is rewritten each round with its latest figures, none of them indexed:
# room on each page keeps those updates HOT (no index writes).
CONSUMER_FILLFACTOR = "ALTER TABLE collector_consumer SET (fillfactor = 50);"


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0009_alert_delivery'),
    ]

    operations = [
        migrations.RunSQL(SAMPLE_TABLE, "DROP TABLE collector_lagsample;"),
        migrations.CreateModel(
            name='LagSample',
            fields=[
                ('consumer_id', models.BigIntegerField(primary_key=True, serialize=False)),
                ('at', models.DateTimeField()),
                ('state', models.CharField(max_length=8)),
                ('pending', models.BigIntegerField(null=True)),
                ('ack_pending', models.BigIntegerField(null=True)),
                ('redelivered', models.BigIntegerField(null=True)),
                ('waiting', models.BigIntegerField(null=True)),
                ('delivered_seq', models.BigIntegerField(null=True)),
                ('ack_floor_seq', models.BigIntegerField(null=True)),
                ('stream_first_seq', models.BigIntegerField(null=True)),
                ('stream_last_seq', models.BigIntegerField(null=True)),
                ('last_active', models.DateTimeField(null=True)),
                ('oldest_ts', models.DateTimeField(null=True)),
                ('oldest_source', models.CharField(max_length=8)),
                ('consume_rate', models.FloatField(null=True)),
                ('produce_rate', models.FloatField(null=True)),
                ('drain_seconds', models.FloatField(null=True)),
                ('growing', models.BooleanField()),
                ('note', models.TextField(null=True)),
            ],
            options={
                'db_table': 'collector_lagsample',
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='LagSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('enabled', models.BooleanField(default=True, help_text='Sample consumer lag in the collector.')),
                ('interval_seconds', models.PositiveIntegerField(default=10, help_text='Seconds between two samples of every consumer.')),
                ('raw_retention_hours', models.PositiveIntegerField(default=24, help_text='Raw samples older than this are dropped.')),
                ('rollup_retention_days', models.PositiveIntegerField(default=30, help_text='Per-minute and per-hour rollups older than this are deleted.')),
            ],
            options={
                'verbose_name': 'consumer lag settings',
                'verbose_name_plural': 'consumer lag settings',
            },
        ),
        migrations.CreateModel(
            name='Consumer',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('stream', models.CharField(help_text='JetStream stream (a RabbitMQ vhost or Kafka topic later).', max_length=200)),
                ('name', models.CharField(max_length=200)),
                ('kind', models.CharField(default='jetstream', max_length=16)),
                ('observer', models.BooleanField(default=False, help_text="Eventscope's own observer: shown apart.")),
                ('config', models.JSONField(default=dict)),
                ('created_at', models.DateTimeField(help_text='When the broker created it.', null=True)),
                ('first_seen', models.DateTimeField()),
                ('last_seen', models.DateTimeField()),
                ('gone_at', models.DateTimeField(null=True)),
                ('sampled_at', models.DateTimeField(null=True)),
                ('status', models.CharField(choices=[('ok', 'ok'), ('lagging', 'lagging'), ('stalled', 'stalled'), ('growing', 'growing'), ('gone', 'gone')], default='ok', max_length=16)),
                ('status_since', models.DateTimeField(null=True)),
                ('lag', models.BigIntegerField(null=True)),
                ('pending', models.BigIntegerField(null=True)),
                ('ack_pending', models.BigIntegerField(null=True)),
                ('redelivered', models.BigIntegerField(null=True)),
                ('waiting', models.BigIntegerField(null=True)),
                ('oldest_age', models.FloatField(help_text='Seconds.', null=True)),
                ('consume_rate', models.FloatField(null=True)),
                ('produce_rate', models.FloatField(null=True)),
                ('drain_seconds', models.FloatField(null=True)),
                ('growing', models.BooleanField(default=False)),
                ('note', models.TextField(blank=True, default='')),
                ('broker', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='collector.broker')),
            ],
        ),
        migrations.CreateModel(
            name='ConsumerEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField()),
                ('kind', models.CharField(choices=[('appeared', 'appeared'), ('reset', 'reset'), ('purge', 'stream purged')], max_length=16)),
                ('detail', models.TextField(blank=True, default='')),
                ('consumer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='collector.consumer')),
            ],
        ),
        migrations.CreateModel(
            name='LagRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('samples', models.IntegerField(default=0)),
                ('unread', models.IntegerField(default=0, help_text='Samples that could not be read or found the consumer gone.')),
                ('lag_sum', models.BigIntegerField(default=0)),
                ('lag_max', models.BigIntegerField(default=0)),
                ('lag_last', models.BigIntegerField(default=0)),
                ('ack_pending_max', models.BigIntegerField(default=0)),
                ('redelivered_max', models.BigIntegerField(default=0)),
                ('oldest_age_max', models.FloatField(default=0)),
                ('minute', models.DateTimeField()),
                ('consumer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='collector.consumer')),
            ],
        ),
        migrations.CreateModel(
            name='LagRollupHour',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('samples', models.IntegerField(default=0)),
                ('unread', models.IntegerField(default=0, help_text='Samples that could not be read or found the consumer gone.')),
                ('lag_sum', models.BigIntegerField(default=0)),
                ('lag_max', models.BigIntegerField(default=0)),
                ('lag_last', models.BigIntegerField(default=0)),
                ('ack_pending_max', models.BigIntegerField(default=0)),
                ('redelivered_max', models.BigIntegerField(default=0)),
                ('oldest_age_max', models.FloatField(default=0)),
                ('hour', models.DateTimeField()),
                ('consumer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='collector.consumer')),
            ],
        ),
        migrations.CreateModel(
            name='LagRound',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('collector', models.CharField(max_length=200)),
                ('started', models.DateTimeField()),
                ('finished', models.DateTimeField()),
                ('consumers', models.IntegerField(default=0)),
                ('unread_streams', models.IntegerField(default=0)),
                ('wall_ms', models.FloatField(default=0)),
                ('cpu_ms', models.FloatField(default=0)),
                ('note', models.TextField(blank=True, default='')),
            ],
            options={
                'indexes': [models.Index(fields=['-started'], name='laground_started')],
            },
        ),
        migrations.CreateModel(
            name='LagThreshold',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('stream', models.CharField(blank=True, default='', help_text='Stream (blank: every stream).', max_length=200)),
                ('consumer', models.CharField(blank=True, default='', help_text='Consumer name (blank: every consumer of the stream).', max_length=200)),
                ('max_lag', models.PositiveIntegerField(default=1000, help_text='Lagging above this many unprocessed messages.')),
                ('max_oldest_age', models.PositiveIntegerField(default=300, help_text='Lagging when the oldest unprocessed message is older (seconds).')),
                ('stalled_after', models.PositiveIntegerField(default=120, help_text='Stalled when messages wait and nothing was acked for this long (seconds).')),
                ('growing_after', models.PositiveIntegerField(default=300, help_text='Growing when the lag has risen for this long (seconds).')),
                ('webhook', models.URLField(blank=True, default='', help_text='POSTed a JSON summary of every crossing.')),
                ('enabled', models.BooleanField(default=True)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('stream', 'consumer'), name='lagthreshold_target')],
            },
        ),
        migrations.CreateModel(
            name='LagCrossing',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField()),
                ('status_from', models.CharField(max_length=16)),
                ('status_to', models.CharField(max_length=16)),
                ('lag', models.BigIntegerField(null=True)),
                ('oldest_age', models.FloatField(null=True)),
                ('reason', models.TextField(blank=True, default='')),
                ('notified', models.CharField(blank=True, default='', max_length=500)),
                ('consumer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='crossings', to='collector.consumer')),
                ('threshold', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='collector.lagthreshold')),
            ],
        ),
        migrations.AddIndex(
            model_name='consumer',
            index=models.Index(fields=['observer', 'stream', 'name'], name='consumer_stream'),
        ),
        migrations.AddConstraint(
            model_name='consumer',
            constraint=models.UniqueConstraint(fields=('broker', 'stream', 'name'), name='consumer_key'),
        ),
        migrations.AddIndex(
            model_name='consumerevent',
            index=models.Index(fields=['consumer', '-at'], name='consumerevent_time'),
        ),
        migrations.AddIndex(
            model_name='lagrollup',
            index=models.Index(fields=['minute'], name='lagrollup_minute'),
        ),
        migrations.AddConstraint(
            model_name='lagrollup',
            constraint=models.UniqueConstraint(fields=('consumer', 'minute'), name='lagrollup_key'),
        ),
        migrations.AddIndex(
            model_name='lagrolluphour',
            index=models.Index(fields=['hour'], name='lagrolluphour_hour'),
        ),
        migrations.AddConstraint(
            model_name='lagrolluphour',
            constraint=models.UniqueConstraint(fields=('consumer', 'hour'), name='lagrolluphour_key'),
        ),
        migrations.AddIndex(
            model_name='lagcrossing',
            index=models.Index(fields=['consumer', '-at'], name='lagcrossing_time'),
        ),
        migrations.AddIndex(
            model_name='lagcrossing',
            index=models.Index(fields=['-at'], name='lagcrossing_at'),
        ),
        migrations.RunSQL(CONSUMER_FILLFACTOR, migrations.RunSQL.noop),
    ]
