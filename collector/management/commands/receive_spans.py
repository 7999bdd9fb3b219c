import asyncio
import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger("eventscope.spans")


class SpanHost:
    """What `collector.traces.service` needs of a process: its metrics, heartbeat reports
    and extension list. Here nothing but the span receivers runs."""

    def __init__(self):
        from collector.ingest.metrics import Metrics

        self.metrics = Metrics()
        self.extensions = []
        self.reports = {}


class Command(BaseCommand):
    help = ("Run only the span receivers (Jaeger UDP and HTTP, OTLP/HTTP and gRPC) into PostgreSQL: "
            "a service of its own, so collectors scale without sharing span ports.")

    def handle(self, *args, **options):
        asyncio.run(self.main())

    async def main(self):
        from collector.traces import service

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        host = SpanHost()
        service.install(host, force=True)
        host.metrics.serve(settings.EVENTSCOPE_METRICS_PORT, settings.EVENTSCOPE_METRICS_HOST)
        log.info("span receivers starting")
        receivers = asyncio.create_task(service.serve_spans(host, stop))
        await asyncio.wait([receivers, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        receivers.cancel()
        await asyncio.gather(receivers, return_exceptions=True)
        log.info("span receivers stopped")
