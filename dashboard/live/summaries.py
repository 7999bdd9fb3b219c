"""The live summaries of one web process: each (kind, parameters) a page listens to is
computed once per its interval, in a thread, and sent to every socket that listens, only
when it changed for that socket. Nothing runs while nobody listens. The kinds are in
`collector.live.summaries`."""
import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async

from collector.live.summaries import KINDS, BadParams

log = logging.getLogger("eventscope.live")

TICK = 0.5  # seconds between checks for a kind that is due


class SummaryHub:
    def __init__(self):
        self.listeners = {}  # (kind, params as JSON) -> set of consumers
        self.due = {}  # (kind, params as JSON) -> monotonic time of the next computation
        self.latest = {}  # (kind, params as JSON) -> the last computed data
        self.task = None

    def subscribe(self, consumer, kind, params):
        """Listen to a kind; returns its key. Raises BadParams naming what is wrong."""
        if kind not in KINDS:
            raise BadParams(f"no live summary called {kind!r} (known: {', '.join(sorted(KINDS))})")
        canonical = KINDS[kind].parse(params or {})
        key = (kind, json.dumps(canonical, sort_keys=True))
        self.listeners.setdefault(key, set()).add(consumer)
        self.due.setdefault(key, 0.0)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        if key in self.latest:
            asyncio.ensure_future(consumer.send_summary(kind, self.latest[key]))
        return key

    def unsubscribe(self, consumer):
        for key in list(self.listeners):
            self.listeners[key].discard(consumer)
            if not self.listeners[key]:
                del self.listeners[key]
                self.due.pop(key, None)
                self.latest.pop(key, None)

    async def _run(self):
        while self.listeners:
            now = time.monotonic()
            for key in [k for k, when in self.due.items() if when <= now]:
                kind, params = key
                self.due[key] = now + KINDS[kind].every
                try:
                    data = await database_sync_to_async(KINDS[kind].compute)(json.loads(params))
                except Exception:  # one failing kind says so and the others go on
                    log.exception("live summary %s failed", kind)
                    continue
                self.latest[key] = data
                for consumer in list(self.listeners.get(key, ())):
                    await consumer.send_summary(kind, data)
            await asyncio.sleep(TICK)


hub = SummaryHub()
