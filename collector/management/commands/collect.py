import asyncio
import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger("eventscope.collector")


class Command(BaseCommand):
    help = "Run the collector: tap every NATS stream and subject into PostgreSQL."

    def handle(self, *args, **options):
        asyncio.run(self.main())

    async def main(self):
        from asgiref.sync import sync_to_async

        from collector.ingest.extensions import install_extensions
        from collector.ingest.service import Collector, load_configuration

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # The batch in hand is committed and acked before the process exits.
            loop.add_signal_handler(signum, stop.set)
        broker, rules, scope, max_payload = await sync_to_async(load_configuration)()
        collector = Collector(broker, rules=rules, scope=scope, max_payload=max_payload,
                              decode_workers=settings.EVENTSCOPE_DECODE_WORKERS)
        install_extensions(collector)
        collector.metrics.serve(settings.EVENTSCOPE_METRICS_PORT, settings.EVENTSCOPE_METRICS_HOST)
        log.info("collector %s starting on %s", collector.name, broker.display_url)
        await collector.run(stop)
        log.info("collector stopped")
