"""Topology in the collector: an after-commit hook adds each batch's new events to the
publish edges per 5 and 15 minutes and hour and records registration events on `service.events`;
a pass every few seconds turns newly received spans into edges."""
import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg
from channels.db import database_sync_to_async
from django.db import DatabaseError

from collector.topology import registrations, writer
from collector.waits import pause

log = logging.getLogger("eventscope.topology")

INTERVAL = 2.0  # seconds between span passes
PRUNE_EVERY = 3600


def install(collector):
    """Add topology capture to a collector, before it runs."""
    collector.topology = {"span_edges": 0, "registrations": 0, "bad_registrations": 0, "passes": 0}
    collector.after_commit.append(on_commit)
    collector.extensions.append(span_edges)
    collector.reports["topology"] = lambda: dict(collector.topology)


def registrations_of(rows):
    """([(Registration, time)], [(row, reason)]) of the committed rows on `service.events`."""
    found, bad = [], []
    for row in rows:
        if row.subject != registrations.SUBJECT:
            continue
        try:
            found += [(item, row.ts) for item in registrations.parse(row.payload, row.raw)]
        except registrations.BadRegistration as error:
            bad.append((row, str(error)))
    return found, bad


async def on_commit(collector, rows):
    """After-commit hook: the batch's new events are added to the coarse publish edges, and
    registrations become service instances. A message that is no registration stays stored
    as it is; the reason is logged and counted."""
    if any(row.id is not None for row in rows):
        await database_sync_to_async(writer.record_publishes)(rows)
    found, bad = registrations_of(rows)
    for row, reason in bad:
        log.warning("registration on %s (stream %s seq %s) not understood: %s", row.subject, row.stream, row.seq, reason)
    collector.topology["bad_registrations"] += len(bad)
    if found:
        await database_sync_to_async(writer.record_registrations)(found)
        collector.topology["registrations"] += len(found)


def _span_pass():
    total, caught_up = 0, False
    while not caught_up:
        written, caught_up = writer.span_pass()
        total += written
    return total


def _prune():
    from collector.models import TraceSettings

    days = TraceSettings.load().span_retention_days
    return writer.prune(datetime.now(UTC) - timedelta(days=days))


async def span_edges(collector, stop):
    """The collector extension: a span pass every INTERVAL seconds."""
    next_prune = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            collector.topology["span_edges"] += await database_sync_to_async(_span_pass)()
            collector.topology["passes"] += 1
            if loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_EVERY
                await database_sync_to_async(_prune)()
        except asyncio.CancelledError:
            raise
        except (DatabaseError, psycopg.Error) as error:
            log.warning("topology span pass: database unavailable (%s); retrying", error)
        except Exception:  # one bad pass must not end the passes
            log.exception("topology span pass failed")
        await pause(stop, INTERVAL)
