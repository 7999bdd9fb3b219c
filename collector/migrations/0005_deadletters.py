# Dead letters: capture, rollup, retries and alerts.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0004_traces'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='DeadLetterSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('dlq_patterns', models.TextField(default='*.dlq\n>.dlq\ndlq.>\n*.deadletter\n>.deadletter', help_text="Subjects that carry dead letters, one a line. NATS wildcards; a leading > matches one or more tokens, so '>.dlq' is any subject ending in .dlq. What the wildcards matched is the original topic unless a header names it.")),
                ('topic_headers', models.TextField(default='X-Original-Topic\nX-Original-Subject\nMicro-Topic', help_text='Header names that carry the original topic, one a line, first found wins.')),
                ('error_headers', models.TextField(default='X-Error\nX-Exception-Message\nError', help_text='Header names for the error text.')),
                ('attempts_headers', models.TextField(default='X-Attempts\nX-Retry-Count\nX-Deliveries', help_text='Header names for the delivery count.')),
                ('retention_days', models.PositiveIntegerField(default=30, help_text='Dead letters older than this are deleted.')),
                ('audit_retention_days', models.PositiveIntegerField(default=180, help_text='Audit entries older than this are deleted.')),
                ('bulk_rate', models.PositiveIntegerField(default=2000, help_text='Bulk retries send at most this many messages a second.')),
            ],
            options={
                'verbose_name': 'dead-letter settings',
                'verbose_name_plural': 'dead-letter settings',
            },
        ),
        migrations.CreateModel(
            name='DeadLetterThreshold',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('subject_pattern', models.CharField(default='>', help_text='NATS wildcard pattern of original topics.', max_length=300)),
                ('consumer', models.CharField(blank=True, default='', help_text='Only this consumer (blank: any).', max_length=200)),
                ('count', models.PositiveIntegerField(default=10)),
                ('minutes', models.PositiveIntegerField(default=5)),
                ('webhook', models.URLField(blank=True, default='', help_text='POSTed a JSON summary when the threshold is crossed.')),
                ('enabled', models.BooleanField(default=True)),
            ],
        ),
        migrations.CreateModel(
            name='DeadLetter',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=400, unique=True)),
                ('reason', models.CharField(choices=[('max_deliveries', 'max deliveries'), ('terminated', 'terminated by consumer'), ('rejected', 'rejected by consumer'), ('decode_failure', 'decode failure'), ('dlq_subject', 'sent to a DLQ subject')], max_length=32)),
                ('subject', models.TextField(help_text='The original subject: where a retry sends it.')),
                ('dlq_subject', models.TextField(blank=True, default='', help_text='The DLQ subject it arrived on, if any.')),
                ('stream', models.TextField(blank=True, default='')),
                ('consumer', models.TextField(blank=True, default='')),
                ('stream_seq', models.BigIntegerField(null=True)),
                ('event_id', models.BigIntegerField(help_text='The stored event (no foreign key: events are partitioned).', null=True)),
                ('headers', models.JSONField(null=True)),
                ('raw', models.BinaryField(help_text='The message bytes; empty when the broker no longer had them.', null=True)),
                ('size', models.IntegerField(default=0)),
                ('error', models.TextField(blank=True, default='')),
                ('note', models.TextField(blank=True, default='')),
                ('deliveries', models.IntegerField(null=True)),
                ('trace_id', models.TextField(blank=True, default='')),
                ('span_id', models.TextField(blank=True, default='')),
                ('first_seen', models.DateTimeField()),
                ('last_seen', models.DateTimeField()),
                ('status', models.CharField(choices=[('new', 'new'), ('retrying', 'retrying'), ('retried', 'retried'), ('resolved', 'resolved'), ('discarded', 'discarded')], default='new', max_length=16)),
                ('attempt', models.IntegerField(default=0, help_text='Retries claimed so far; a retry form carries the value it saw.')),
                ('status_reason', models.TextField(blank=True, default='')),
                ('updated', models.DateTimeField(auto_now=True)),
                ('broker', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='collector.broker')),
                ('retry_of', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='died_again', to='collector.deadletter')),
            ],
            options={
                'permissions': [('retry_deadletter', 'Can retry, discard and resolve dead letters')],
            },
        ),
        migrations.CreateModel(
            name='DeadLetterRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('minute', models.DateTimeField()),
                ('subject', models.TextField()),
                ('consumer', models.TextField(default='')),
                ('reason', models.CharField(max_length=32)),
                ('count', models.BigIntegerField(default=0)),
            ],
            options={
                'indexes': [models.Index(fields=['minute'], name='deadletterrollup_minute')],
                'constraints': [models.UniqueConstraint(fields=('minute', 'subject', 'consumer', 'reason'), name='deadletterrollup_key')],
            },
        ),
        migrations.CreateModel(
            name='DeadLetterAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('count', models.IntegerField()),
                ('detail', models.JSONField(default=dict)),
                ('notified', models.CharField(blank=True, default='', max_length=500)),
                ('threshold', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='collector.deadletterthreshold')),
            ],
        ),
        migrations.CreateModel(
            name='RetryJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('selection', models.JSONField(default=dict, help_text="{'ids': {id: attempt}} or {'filters': {...}}")),
                ('state', models.CharField(choices=[('queued', 'queued'), ('running', 'running'), ('done', 'done'), ('failed', 'failed')], default='queued', max_length=16)),
                ('total', models.IntegerField(default=0)),
                ('sent', models.IntegerField(default=0)),
                ('skipped', models.IntegerField(default=0)),
                ('failed', models.IntegerField(default=0)),
                ('error', models.TextField(blank=True, default='')),
                ('finished', models.DateTimeField(null=True)),
                ('user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='RetryAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('attempt', models.IntegerField()),
                ('msg_id', models.CharField(help_text='Nats-Msg-Id: JetStream drops a second copy.', max_length=200)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('sent_at', models.DateTimeField(null=True)),
                ('subject', models.TextField()),
                ('edited_headers', models.JSONField(help_text="An admin's edited headers, sent instead of the original.", null=True)),
                ('edited_raw', models.BinaryField(help_text="An admin's edited payload, sent instead of the original.", null=True)),
                ('outcome', models.CharField(choices=[('queued', 'queued'), ('sending', 'sending'), ('sent', 'republished'), ('duplicate', 'already republished (deduplicated)'), ('failed', 'failed')], default='queued', max_length=16)),
                ('error', models.TextField(blank=True, default='')),
                ('stream', models.TextField(blank=True, default='')),
                ('stream_seq', models.BigIntegerField(help_text='Where the republished message landed (publish ack).', null=True)),
                ('followup', models.CharField(choices=[('pending', 'waiting for the consumer'), ('consumed', 'consumed'), ('died_again', 'died again'), ('unknown', 'unknown')], default='pending', max_length=16)),
                ('followed_at', models.DateTimeField(null=True)),
                ('dead_letter', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='collector.deadletter')),
                ('next_dead_letter', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='collector.deadletter')),
                ('user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='attempts', to='collector.retryjob')),
            ],
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['-first_seen', '-id'], name='deadletter_time'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['subject', '-first_seen'], name='deadletter_subject'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['consumer', '-first_seen'], name='deadletter_consumer'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['reason', '-first_seen'], name='deadletter_reason'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['status', '-first_seen'], name='deadletter_status'),
        ),
        migrations.AddIndex(
            model_name='retryattempt',
            index=models.Index(fields=['followup', 'outcome'], name='retryattempt_follow'),
        ),
        migrations.AddConstraint(
            model_name='retryattempt',
            constraint=models.UniqueConstraint(fields=('dead_letter', 'attempt'), name='retryattempt_once'),
        ),
    ]
