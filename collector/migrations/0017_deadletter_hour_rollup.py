# Hourly dead-letter rollup beside the per-minute one, filled from the minute rows already stored.

from django.db import migrations, models

BACKFILL = """
INSERT INTO collector_deadletterhourrollup (hour, subject, consumer, reason, count)
SELECT date_trunc('hour', minute), subject, consumer, reason, sum(count)
FROM collector_deadletterrollup GROUP BY 1, 2, 3, 4
"""


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0016_hourly_rollup'),
    ]

    operations = [
        migrations.CreateModel(
            name='DeadLetterHourRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('hour', models.DateTimeField()),
                ('subject', models.TextField()),
                ('consumer', models.TextField(default='')),
                ('reason', models.CharField(max_length=32)),
                ('count', models.BigIntegerField(default=0)),
            ],
            options={
                'indexes': [models.Index(fields=['hour'], name='deadletterhourrollup_hour')],
                'constraints': [models.UniqueConstraint(fields=('hour', 'subject', 'consumer', 'reason'),
                                                        name='deadletterhourrollup_key')],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
