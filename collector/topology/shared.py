"""The topology graph shared by polling pages: `/api/topology` and the service page ask for
the graph of a window every few seconds; requests for the same window length whose end falls
in the same step of CACHE_SECONDS get the answer computed for the first of them, at most
that old. Per process."""
import threading
import time

from collector.models.topology import TopologySettings
from collector.topology.readers import graph

# Polling pages share an answer for this long: the same window length whose end falls in
# the same step of this many seconds gets the graph computed for the first of them (at most
# this old). Per process; 0 turns it off.
CACHE_SECONDS = 10.0
# At most this many answers kept (the oldest go first): windows asked for at once are few.
CACHE_ANSWERS = 8
_cache = {}
_cache_lock = threading.Lock()
_clock = time.monotonic


def shared_graph(start, end, compare=True, settings=None):
    """graph(), shared by the requests for the same window length ending in the same
    CACHE_SECONDS step, for at most CACHE_SECONDS: (data, store) where `store` is a dict
    kept with the answer (for its encoded form)."""
    settings = settings or TopologySettings.load()
    step = CACHE_SECONDS
    if step <= 0:
        return graph(start, end, compare, settings), {}
    key = (int(end.timestamp() // step), (end - start).total_seconds(), compare, settings.namespace_pattern,
           settings.warn_error_rate, settings.bad_error_rate)
    now = _clock()
    with _cache_lock:
        for old in [k for k, (expires, _, _) in _cache.items() if expires <= now]:
            del _cache[old]
        found = _cache.get(key)
    if found:
        return found[1], found[2]
    data, store = graph(start, end, compare, settings), {}
    with _cache_lock:
        _cache[key] = (_clock() + step, data, store)
        while len(_cache) > CACHE_ANSWERS:
            del _cache[min(_cache, key=lambda k: _cache[k][0])]
    return data, store
