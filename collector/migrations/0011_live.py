# Live tail: the per-connection rate cap operators set in the admin.

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0010_consumer_lag'),
    ]

    operations = [
        migrations.AddField(
            model_name='runtimesettings',
            name='live_rate_cap',
            field=models.PositiveIntegerField(default=200, help_text='Events a second one live page is sent at most; above it the page gets a sample and exact counts.', validators=[django.core.validators.MinValueValidator(1)]),
        ),
    ]
