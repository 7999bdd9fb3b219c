# Hourly rollup beside the per-minute one, filled from the minute rows already stored.

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
INSERT INTO collector_eventhourrollup (hour, broker_id, subject, producer, type, version, count, bytes, errors)
SELECT date_trunc('hour', minute), broker_id, subject, producer, type, version, sum(count), sum(bytes), sum(errors)
FROM collector_eventrollup GROUP BY 1, 2, 3, 4, 5, 6
"""


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0015_topology'),
    ]

    operations = [
        migrations.CreateModel(
            name='EventHourRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('hour', models.DateTimeField()),
                ('subject', models.TextField()),
                ('producer', models.TextField(default='')),
                ('type', models.TextField(default='')),
                ('version', models.TextField(default='')),
                ('count', models.BigIntegerField(default=0)),
                ('bytes', models.BigIntegerField(default=0)),
                ('errors', models.BigIntegerField(default=0)),
                ('broker', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='collector.broker')),
            ],
            options={
                'indexes': [models.Index(fields=['subject', 'hour'], name='hour_rollup_subject'),
                            models.Index(fields=['hour'], name='hour_rollup_hour')],
                'constraints': [models.UniqueConstraint(fields=('hour', 'broker', 'subject', 'producer', 'type',
                                                                'version'), name='hour_rollup_key')],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
