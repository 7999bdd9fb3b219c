# Retry outcomes: "outcome unknown" for dead letters and attempts, the sending worker's lock,
# stalled bulk jobs, and one-time publish form tokens.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0006_collector_stall'),
    ]

    operations = [
        migrations.AddField(
            model_name='retryattempt',
            name='first_sent_at',
            field=models.DateTimeField(help_text='When a worker first began sending it: from then on it may be on the stream.', null=True),
        ),
        migrations.AddField(
            model_name='retryattempt',
            name='sender',
            field=models.IntegerField(help_text='The advisory lock the sending worker holds; a free lock means the worker is gone.', null=True),
        ),
        migrations.AddField(
            model_name='retryjob',
            name='heartbeat',
            field=models.DateTimeField(help_text='Last progress of the worker running it.', null=True),
        ),
        migrations.AddField(
            model_name='retryjob',
            name='unknown',
            field=models.IntegerField(default=0, help_text='Sent, but whether the stream kept them is unknown.'),
        ),
        migrations.AlterField(
            model_name='deadletter',
            name='status',
            field=models.CharField(choices=[('new', 'new'), ('retrying', 'retrying'), ('retried', 'retried'), ('resolved', 'resolved'), ('discarded', 'discarded'), ('unknown', 'outcome unknown')], default='new', max_length=16),
        ),
        migrations.AlterField(
            model_name='retryattempt',
            name='outcome',
            field=models.CharField(choices=[('queued', 'queued'), ('sending', 'sending'), ('sent', 'republished'), ('duplicate', 'already republished (deduplicated)'), ('found', 'already on the stream (found by its provenance)'), ('failed', 'failed'), ('unknown', 'outcome unknown')], default='queued', max_length=16),
        ),
        migrations.AlterField(
            model_name='retryjob',
            name='state',
            field=models.CharField(choices=[('queued', 'queued'), ('running', 'running'), ('done', 'done'), ('failed', 'failed'), ('stalled', 'stalled (its worker stopped)')], default='queued', max_length=16),
        ),
        migrations.CreateModel(
            name='PublishToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('nonce', models.CharField(max_length=64, unique=True)),
                ('subject', models.TextField()),
                ('created', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('audit', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='collector.auditentry')),
            ],
        ),
    ]
