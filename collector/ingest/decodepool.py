"""Decoding in worker processes, so it runs on another core than the event loop that
reads the broker and writes the database (decoding is pure: bytes in, fields out)."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from collector import decoders


def decode_many(rulebook, items):
    """[(subject, headers, data)] -> [Decoded]; runs in a worker process."""
    decode = decoders.decode
    return [decode(subject, headers, data, rulebook.for_subject(subject)) for subject, headers, data in items]


def make_pool(workers):
    if workers <= 0:
        return None
    # forkserver: workers start from a small clean process, not a copy of the collector.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
