from django.core.management.base import BaseCommand

from collector.events.retention import prune


class Command(BaseCommand):
    help = "Drop the event partitions older than the retention set in the admin (runtime settings)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="keep this many days instead of the configured retention")

    def handle(self, *args, days=None, **options):
        dropped = prune(days=days)
        for name in dropped:
            self.stdout.write(f"dropped {name}")
        self.stdout.write(f"{len(dropped)} partition(s) dropped")
