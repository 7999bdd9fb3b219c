# Dead-letter alerts: one record per crossing (threshold, window start), delivered by the
# worker; the admin setting that lets webhooks reach private addresses.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('collector', '0008_share_links'),
    ]

    operations = [
        migrations.AddField(
            model_name='deadlettersettings',
            name='allow_private_webhooks',
            field=models.BooleanField(default=False, help_text='Let alert webhooks reach loopback and private addresses (127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7 …). Link-local addresses and cloud metadata hosts are refused always.', verbose_name='allow private webhook targets'),
        ),
        migrations.AlterField(
            model_name='deadletterthreshold',
            name='webhook',
            field=models.URLField(blank=True, default='', help_text='POSTed a JSON summary when the threshold is crossed (by the worker; link-local and metadata hosts refused).'),
        ),
        migrations.AddField(
            model_name='deadletteralert',
            name='window_start',
            field=models.DateTimeField(help_text="The threshold's window (aligned to its length) in which it was crossed.", null=True),
        ),
        migrations.AddField(
            model_name='deadletteralert',
            name='webhook',
            field=models.URLField(blank=True, default='', help_text='Where the alert goes, as set when it was raised.'),
        ),
        migrations.AddField(
            model_name='deadletteralert',
            name='delivery',
            field=models.CharField(choices=[('none', 'no webhook'), ('pending', 'queued for the worker'), ('sending', 'sending'), ('posted', 'posted'), ('failed', 'not posted'), ('refused', 'refused (target not allowed)')], default='none', max_length=16),
        ),
        migrations.AddField(
            model_name='deadletteralert',
            name='queued_at',
            field=models.DateTimeField(help_text='Last handed to the worker.', null=True),
        ),
        migrations.AddField(
            model_name='deadletteralert',
            name='delivered_at',
            field=models.DateTimeField(null=True),
        ),
        migrations.AddConstraint(
            model_name='deadletteralert',
            constraint=models.UniqueConstraint(fields=('threshold', 'window_start'), name='deadletteralert_once'),
        ),
        migrations.AddIndex(
            model_name='deadletteralert',
            index=models.Index(fields=['delivery', 'queued_at'], name='deadletteralert_delivery'),
        ),
    ]
