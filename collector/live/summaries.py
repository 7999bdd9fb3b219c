"""Live summaries: small numbers other pages show and keep current over the live socket
instead of reloading (the overview's counters, the dead-letter count).

A kind is a name, a function computing its numbers from the store, and a function that
checks the parameters a page sends. The web process computes each (kind, parameters)
once per `every` seconds while some page listens, and sends it to all of them, so a
hundred open overviews cost one query every two seconds, not a hundred reloads.

To add a kind (topology edge rates, consumer lag ...): write its reader in
`collector/<room>/readers.py`, `register()` it below, and on the page put
`data-live-summary="<kind>"` (with `data-live-params` as JSON when it takes any) around
elements marked `data-live-field="<name>"`: each gets the text of that field (see
frontend/src/livesummary.js). The compute function runs in a thread with database access
and returns a dict of JSON values; raise BadParams for parameters it cannot take.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

KINDS = {}


class BadParams(ValueError):
    """Parameters a summary kind cannot take; str() says why."""


@dataclass(frozen=True)
class SummaryKind:
    name: str
    compute: Callable[[dict], dict]
    parse: Callable[[dict], dict] = field(default=lambda params: {})
    every: float = 2.0  # seconds between computations while someone listens


def register(kind):
    KINDS[kind.name] = kind
    return kind


# --- the overview's counters -------------------------------------------------------------

MAX_SECONDS = 366 * 86_400


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime


def _window_params(params):
    try:
        seconds = int(params.get("seconds"))
    except (TypeError, ValueError, AttributeError):
        raise BadParams("overview needs seconds, a whole number (the page's window)") from None
    if not 60 <= seconds <= MAX_SECONDS:
        raise BadParams(f"seconds must be between 60 and {MAX_SECONDS}")
    return {"seconds": seconds}


def overview_counts(params):
    from collector.events import readers

    end = datetime.now(timezone.utc)
    stats = readers.overview(_Window(end - timedelta(seconds=params["seconds"]), end))
    last = stats["last_event"]
    return {
        "events": stats["events"],
        "bytes": stats["bytes"],
        "errors": stats["errors"],
        "topics": stats["topics"],
        "all_topics": stats["all_topics"],
        "producers": stats["producers"],
        "last_event": last.isoformat() if last else None,
        "collectors_up": sum(1 for c in stats["collectors"] if c["up"]),
        "dead_letters_new": new_dead_letters(),
    }


# --- the dead-letter count ---------------------------------------------------------------


def new_dead_letters():
    from collector.models import DeadLetter

    return DeadLetter.objects.filter(status=DeadLetter.Status.NEW).count()


def latest_death():
    from collector.models import DeadLetter

    return DeadLetter.objects.order_by("-first_seen").values_list("first_seen", flat=True).first()


def dead_letter_counts(params):
    latest = latest_death()
    return {"new": new_dead_letters(), "latest": latest.isoformat() if latest else None}


register(SummaryKind("overview", overview_counts, _window_params))
register(SummaryKind("deadletters", dead_letter_counts))
