from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("collector", "0003_audit")]

    operations = []
