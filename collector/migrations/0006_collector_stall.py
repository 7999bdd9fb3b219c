# Collectors record whether they are stalled (beating, but their ack floor stuck with messages pending).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0005_deadletters'),
    ]

    operations = [
        migrations.AddField(
            model_name='collectorheartbeat',
            name='stalled',
            field=models.TextField(blank=True, default='', help_text='Why it is stalled; empty while it makes progress.'),
        ),
        migrations.AddField(
            model_name='collectorheartbeat',
            name='stalled_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
