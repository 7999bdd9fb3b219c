import asyncio
import json
import os
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

import demo


class Command(BaseCommand):
    help = "Run the demo shop: real event traffic, spans, lag, versions and dead letters on NATS (and RabbitMQ when RABBITMQ_URL is set)."

    def add_arguments(self, parser):
        demo.add_arguments(parser)
        parser.add_argument("--heartbeat-file", help="touch this file every few seconds while running (health checks)")

    def handle(self, *args, **options):
        options = dict(options)
        options["nats_url"] = options.get("nats_url") or settings.NATS_URL
        options["rabbitmq_url"] = settings.RABBITMQ_URL or ""
        heartbeat = options.pop("heartbeat_file", None)
        config = demo.config_from_options(options)
        stats = asyncio.run(self.main(config, heartbeat))
        self.stdout.write(json.dumps(stats.__dict__ if hasattr(stats, "__dict__") else stats, default=str))

    async def main(self, config, heartbeat):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        toucher = asyncio.create_task(self.touch(heartbeat, stop)) if heartbeat else None
        try:
            return await demo.run(config, stop)
        finally:
            if toucher:
                toucher.cancel()

    async def touch(self, path, stop):
        while not stop.is_set():
            with open(path, "a"):
                os.utime(path, (time.time(), time.time()))
            await asyncio.sleep(10)
