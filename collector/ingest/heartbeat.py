"""The collector's heartbeat: every few seconds it writes its row (counters, observer lag,
stall state), rereads its configuration, and applies retention once an hour, as a side
effect of normal work. A clean stop removes the row; a crashed collector shows as down."""
import logging
import time

from channels.db import database_sync_to_async
from django.utils import timezone as dj_timezone

from collector.events.retention import prune
from collector.ingest.configuration import event_retention_days, load_configuration
from collector.waits import pause

log = logging.getLogger("eventscope.collector")

HEARTBEAT_SECONDS = 5.0


class Heartbeat:
    """The heartbeat part of `collector.ingest.service.Collector`."""

    async def _heartbeat(self, stop):
        while not stop.is_set():
            try:
                progress = await self.taps.progress()
                lag = sum(pending for _, pending in progress.values())
                self.metrics.lag.set(lag)
                self.watch_progress(progress)
                await database_sync_to_async(self.write_heartbeat)(lag)
                # Operators edit rules and scope in the admin while this runs.
                _, self.rules, self.scope, self.max_payload = await database_sync_to_async(load_configuration)()
                self.retention_days = await database_sync_to_async(event_retention_days)()
                if time.monotonic() >= self.next_prune:
                    # Retention as a side effect of normal work: whole partitions, once an hour.
                    self.next_prune = time.monotonic() + 3600
                    dropped = await database_sync_to_async(prune)(now=self.clock())
                    if dropped:
                        for link in self.links:
                            link.partitions.forget()
                        log.info("retention dropped %s", ", ".join(dropped))
            except Exception as error:  # a missed heartbeat is logged, the next one tries again
                log.warning("heartbeat failed: %s", error)
            await pause(stop, HEARTBEAT_SECONDS)

    def watch_progress(self, progress):
        """Note whether the observers' ack floors move (see `collector.ingest.stall`)."""
        reason, since = self.stall.observe(progress)
        if reason and not self.stalled:
            log.error("collector stalled: %s", reason)
        elif self.stalled and not reason:
            log.warning("collector no longer stalled")
        self.stalled, self.stalled_since = reason, since

    def forget_heartbeat(self):
        """A clean stop removes this process from the collector list (a crashed one shows as down)."""
        from collector.models import CollectorHeartbeat

        CollectorHeartbeat.objects.filter(name=self.name).delete()

    def write_heartbeat(self, lag=0):
        from collector.models import CollectorHeartbeat

        counters = self.metrics.snapshot()
        counters["lag"] = lag
        counters.update(self.adapter.counters)
        for name, report in self.reports.items():
            counters[name] = report()
        counters["streams"] = {
            name: {"observed": state.observed, "retention": state.retention, "note": state.note}
            for name, state in getattr(self.adapter, "streams", {}).items()
        }
        counters["brokers"] = self.taps.report()
        CollectorHeartbeat.objects.update_or_create(
            name=self.name, defaults={"started": self.started, "beat": dj_timezone.now(), "counters": counters,
                                      "stalled": self.stalled, "stalled_since": self.stalled_since},
        )
