"""Versions inside the collector: `install(collector)` hooks the writer in after each
committed batch (before the ack) and runs the linker beside the loop."""
from channels.db import database_sync_to_async

from collector.versions import linker, writer


def install(collector):
    """Add version learning to a collector, before it runs."""
    learner = writer.Learner()
    collector.versions = learner
    store = database_sync_to_async(writer.store_batch)

    async def on_commit(collector, rows):
        # Rows new to the store only (a redelivery adds nothing); the tally and its SQL run in
        # a thread, so the loop goes on reading meanwhile.
        if any(row.id is not None and row.type for row in rows):
            await store(learner, rows)

    on_commit.__name__ = "versions.on_commit"
    collector.after_commit.append(on_commit)
    linker.install_linker(collector)
    collector.reports["versions"] = learner.report
    return learner
