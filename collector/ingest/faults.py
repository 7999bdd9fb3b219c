"""Fault points for crash tests. `EVENTSCOPE_FAULT` is read only by tests (never set it in
production): it names the moments, comma-separated, at which the collector kills itself
with SIGKILL, as a power cut or the OOM killer would, so a test can restart it and check
that nothing was lost or counted twice.

- `after-commit`: a batch's events are committed; its after-commit hooks (dead letters)
  and its ack have not run, so the broker redelivers it all after a restart.
- `after-ack`: a batch is committed and acked; the next batch has not been taken.
"""
import logging
import os
import signal

log = logging.getLogger("eventscope.collector")

POINTS = ("after-commit", "after-ack")


class Faults:
    def __init__(self, spec=None):
        spec = os.environ.get("EVENTSCOPE_FAULT", "") if spec is None else spec
        self.armed = {point.strip() for point in spec.split(",") if point.strip()}
        unknown = self.armed - set(POINTS)
        if unknown:
            log.warning("EVENTSCOPE_FAULT names no fault point: %s (known: %s)", ", ".join(sorted(unknown)),
                        ", ".join(POINTS))
        if self.armed & set(POINTS):
            log.warning("fault points armed: %s: this collector will kill itself", ", ".join(sorted(self.armed)))

    def reached(self, point):
        if point in self.armed:
            os.kill(os.getpid(), signal.SIGKILL)
