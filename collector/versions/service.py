"""Versions inside the collector: `install(collector)` hooks the writer in after each
committed batch, flushes what waits every second beside the loop (and once more when the
collector stops), and runs the linker."""
from channels.db import database_sync_to_async

from collector.versions import linker, writer
from collector.waits import pause


def install(collector):
    """Add version learning to a collector, before it runs."""
    learner = writer.Learner()
    collector.versions = learner
    take, flush = database_sync_to_async(writer.take), database_sync_to_async(writer.flush)

    async def on_commit(collector, rows):
        # Rows new to the store only (a redelivery adds nothing); walking the payloads and the
        # SQL run in Django's thread, so the loop goes on reading meanwhile.
        if any(row.id is not None and row.type for row in rows):
            await take(learner, rows)

    async def flusher(collector, stop):
        try:
            while not stop.is_set():
                await pause(stop, writer.FLUSH_SECONDS)
                if learner.pending is not None:
                    await flush(learner)
        finally:
            if learner.pending is not None:
                await flush(learner)

    on_commit.__name__ = "versions.on_commit"
    collector.after_commit.append(on_commit)
    collector.extensions.append(flusher)
    linker.install_linker(collector)
    collector.reports["versions"] = learner.report
    return learner
