"""Decoding in worker processes, so it runs on another core than the event loop that
reads the broker and writes the database (decoding is pure: bytes in, fields out).

The workers never outlive the collector: the pool is shut down on every way out of its
loop, and each worker asks the kernel to kill it when the collector dies (SIGKILL
included), since a worker blocked on its task queue would otherwise wait forever.
"""
import ctypes
import multiprocessing
import os
import signal
from collections import namedtuple
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from operator import attrgetter

from collector import decoders
from collector.decoders.result import Decoded

PR_SET_PDEATHSIG = 1
try:  # loaded once, at import: nothing is loaded in a process that just started
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the pool's shutdown is all there is
    _prctl = None


def die_with(parent_pid):
    """Worker initializer: end with the collector (its parent), however it ends."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(0)  # the collector died before the request took effect


# What comes back from a worker: Decoded's fields as a plain tuple, read by name once in
# the collector. Unpickling a list of dataclass instances costs the collector's loop ~8 us
# a message (each one rebuilt field by field); plain tuples ~2 us.
FIELDS = tuple(field.name for field in fields(Decoded))
DecodedFields = namedtuple("DecodedFields", FIELDS)
_as_tuple = attrgetter(*FIELDS)


def decode_many(rulebook, items):
    """[(subject, headers, data)] -> [tuple of Decoded's fields]; runs in a worker process."""
    decode = decoders.decode
    return [_as_tuple(decode(subject, headers, data, rulebook.for_subject(subject)))
            for subject, headers, data in items]


def named(decoded):
    """decode_many's tuples, readable like `Decoded`s (`.payload`, `.note` ...)."""
    return list(map(DecodedFields._make, decoded))


def make_pool(workers):
    if workers <= 0:
        return None
    # spawn: workers start from a fresh interpreter (not a copy of the collector) and are
    # the collector's own children, so their parent-death signal is tied to it (a
    # forkserver would be their parent, and it outlives a killed collector).
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with, initargs=(os.getpid(),))
