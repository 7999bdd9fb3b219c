"""Unit tests of one connection's tail (no socket, no store): filters, the rate cap with a
spread sample and exact counts, credit, gap detection, de-duplication and the cursor."""
import pytest

from collector.live.filters import BadFilter, Filters
from collector.live.protocol import FIELDS, OVERLAP, batch, for_browser
from dashboard.live.tail import MAX_CREDIT, Tail


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def event(ident, rx, subject="orders.created", **fields):
    values = {"id": ident, "rx": rx, "ts": rx, "subject": subject, "type": "", "version": "", "service": "", "key": "",
              "size": 1, "note": "", "preview": "", "committed": None, **fields}
    return [values[name] for name in FIELDS]


def ids(events):
    return [for_browser(e)["id"] for e in events]


def forwarded(seq, events, since=0, source="A", floor=0):
    return batch(source, seq, since, max([for_browser(e)["rx"] for e in events] or [since]), floor, events)


def test_unit_sockets_with_the_same_filters_share_one_filtering_of_a_batch():
    message = forwarded(1, [event(1, 10, service="shop"), event(2, 11, service="mail")])
    first, second = (Tail(Filters.parse({"service": "shop"}), rate_cap=100, credit=100, clock=Clock()) for _ in "ab")
    assert ids(first.take(message)) == ids(second.take(message)) == [1]
    assert list(message["_matching"]) == [Filters(service="shop")]


def test_unit_only_events_passing_the_filters_are_sent():
    tail = Tail(Filters.parse({"subject": "orders.*", "service": "shop"}), rate_cap=100, credit=100, clock=Clock())
    shown = tail.take(forwarded(1, [event(1, 10, service="shop"), event(2, 11, "orders.eu.x", service="shop"),
                                    event(3, 12, service="mail")]))
    assert ids(shown) == [1]


def test_unit_above_the_rate_cap_a_spread_sample_is_sent_and_every_matching_event_is_counted():
    clock = Clock()
    tail = Tail(Filters(), rate_cap=200, credit=MAX_CREDIT, clock=clock)
    shown = tail.take(forwarded(1, [event(n, n) for n in range(5300)]))
    assert len(shown) == 200
    assert ids(shown)[0] == 0 and ids(shown)[-1] > 5000, "spread over the batch, not its first 200"
    clock.now += 0.5  # half a second refills half the cap
    assert len(tail.take(forwarded(2, [event(n, n) for n in range(6000, 7000)], since=5299))) == 100
    stats = tail.stats()
    assert (stats["matching"], stats["shown"], stats["skipped"]) == (6300, 300, 6000)
    assert stats["seconds"] == 0.5


def test_unit_out_of_credit_a_client_gets_counts_only_and_nothing_waits_on_the_server():
    clock = Clock()
    tail = Tail(Filters(), rate_cap=10_000, credit=5, clock=clock)
    assert len(tail.take(forwarded(1, [event(n, n) for n in range(50)]))) == 5
    assert tail.take(forwarded(2, [event(n, n) for n in range(50, 100)], since=49)) == []
    stats = tail.stats()
    assert (stats["shown"], stats["skipped"], stats["credit"]) == (5, 95, 0)
    tail.grant(3)
    assert len(tail.take(forwarded(3, [event(n, n) for n in range(100, 110)], since=99))) == 3
    tail.grant(10**9)
    assert tail.credit == MAX_CREDIT, "a client cannot ask for more than the ceiling"
    assert not hasattr(tail, "queue") and len(tail.recent) <= 3


def test_unit_a_missing_batch_number_asks_for_a_backfill_window_excluding_what_was_seen():
    tail = Tail(Filters(), rate_cap=1000, credit=1000, clock=Clock())
    tail.take(forwarded(1, [event(1, 10_000_000), event(2, 10_000_010)], floor=0))
    assert tail.gap(forwarded(2, [event(3, 10_000_020)], since=10_000_010)) is None
    tail.take(forwarded(2, [event(3, 10_000_020)], since=10_000_010))
    later = forwarded(4, [event(9, 10_000_090)], since=10_000_050, floor=2)
    window = tail.gap(later)
    assert window["lo"] == 10_000_020 - OVERLAP and window["hi"] == 10_000_090 and window["floor"] == 0
    assert window["exclude"] == {1, 2, 3, 9}
    assert tail.gap(forwarded(1, [], source="B")) is None, "a new forwarder has no gap to fill"


def test_unit_a_backfilled_event_that_later_comes_in_a_batch_is_not_shown_twice():
    tail = Tail(Filters(), rate_cap=1000, credit=1000, clock=Clock())
    tail.take(forwarded(1, [event(1, 10)]))
    sent = tail.take_backfill([event(5, 20), event(6, 21)], missed=2)
    assert ids(sent) == [5, 6]
    shown = tail.take(forwarded(3, [event(6, 21), event(7, 22)], since=21))
    assert ids(shown) == [7]
    stats = tail.stats()
    assert (stats["matching"], stats["shown"], stats["skipped"]) == (1 + 4 + 1, 1 + 2 + 1, 2)


def test_unit_the_cursor_is_the_oldest_watermark_and_lowest_floor_of_the_live_forwarders():
    clock = Clock()
    since = {"rx": 5, "id": 1}
    tail = Tail(Filters(), rate_cap=10, credit=10, since=since, clock=clock)
    assert tail.cursor() == since, "until a batch arrives, the cursor it resumed from"
    tail.take(forwarded(1, [event(10, 300)], floor=7, source="A"))
    tail.take(forwarded(1, [event(11, 200)], floor=9, source="B"))
    assert tail.cursor() == {"rx": 200, "id": 7}
    clock.now += 60
    tail.take(forwarded(2, [event(12, 400)], since=300, floor=8, source="A"))
    assert tail.cursor() == {"rx": 400, "id": 8}, "a forwarder silent for long (restarted) no longer holds it back"


def test_unit_the_tail_says_it_is_interrupted_when_no_forwarder_has_sent_anything_for_a_while():
    clock = Clock()
    tail = Tail(Filters(), rate_cap=10, credit=10, clock=clock)
    assert tail.interrupted() is None
    clock.now += 5
    assert "no collector is forwarding" in tail.interrupted()
    tail.take(forwarded(1, []))
    assert tail.interrupted() is None


@pytest.mark.parametrize("subject", ["orders..created", "orders.>.x", "ord*.x", "orders created", ".orders"])
def test_unit_a_malformed_subject_pattern_is_refused_with_the_reason(subject):
    with pytest.raises(BadFilter) as error:
        Filters.parse({"subject": subject})
    assert repr(subject) in str(error.value)
