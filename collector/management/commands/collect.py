import asyncio
import ctypes
import logging
import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger("eventscope.collector")

EXIT_TIMEOUT = 3.0  # seconds the interpreter may wait for threads once the collector stopped


class Command(BaseCommand):
    help = "Run the collector: tap every enabled broker (NATS streams and subjects, RabbitMQ exchanges) into PostgreSQL."

    def handle(self, *args, **options):
        _return_large_blocks_to_the_system()
        failed = True
        try:
            asyncio.run(self.main())
            failed = False
        finally:
            # A thread stuck in a database call (the database hangs) would hold the exit
            # forever. Nothing is lost by not waiting: what was not acked stays on the broker.
            watchdog = threading.Timer(EXIT_TIMEOUT, _exit_now, args=(1 if failed else 0,))
            watchdog.daemon = True
            watchdog.start()

    async def main(self):
        from asgiref.sync import sync_to_async

        from collector.ingest.extensions import install_extensions
        from collector.ingest.service import Collector, load_brokers, load_configuration

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # The batch in hand is committed and acked before the process exits.
            loop.add_signal_handler(signum, stop.set)
        _, rules, scope, max_payload = await sync_to_async(load_configuration)()
        brokers = await sync_to_async(load_brokers)()
        collector = Collector(brokers, rules=rules, scope=scope, max_payload=max_payload,
                              decode_workers=settings.EVENTSCOPE_DECODE_WORKERS)
        try:
            install_extensions(collector)
            collector.metrics.serve(settings.EVENTSCOPE_METRICS_PORT, settings.EVENTSCOPE_METRICS_HOST)
            log.info("collector %s starting on %s", collector.name,
                     ", ".join(f"{b.name} ({b.display_url})" for b in brokers))
            await collector.run(stop)
        finally:
            if collector.decode_pool is not None:  # run() shuts it down; this covers a failed start
                collector.decode_pool.shutdown(wait=False, cancel_futures=True)
        log.info("collector stopped")


M_MMAP_THRESHOLD = -3


def _return_large_blocks_to_the_system():
    """Messages of up to 1 MB pass through by the thousand. glibc raises its mmap threshold
    each time such a block is freed, after which they come from the heap and the freed
    space stays in the process; a fixed threshold keeps every block over 128 KB in its own
    mapping, given back when freed, so the resident size follows what is held."""
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass


def _exit_now(code):
    log.warning("threads still busy %.0f s after the collector stopped; exiting without them", EXIT_TIMEOUT)
    logging.shutdown()
    os._exit(code)
