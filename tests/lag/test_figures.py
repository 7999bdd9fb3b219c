"""Unit tests of the pure pieces of the lag sampler: figures, statuses, thresholds, the
store walk for the oldest message, subject patterns as SQL regular expressions."""
import re
from datetime import datetime, timedelta, timezone

from collector.lag import figures
from collector.lag.jetstream import consumer_reading, stream_reading
from collector.lag.reading import parse_time
from collector.lag.reconcile import subject_regex
from collector.lag.sampler import _figureless, _walk_store
from collector.lag.thresholds import Thresholds
from collector.lag.writer import ROUND_COLUMNS

LIMITS = figures.Limits(max_lag=100, max_oldest_age=60, stalled_after=120, growing_after=30)
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def test_unit_the_drain_estimate_is_lag_over_the_falling_rate_and_growing_when_it_rises():
    trend = figures.Trend()
    for step, lag in enumerate([100, 80, 60]):
        trend.add(T0 + timedelta(seconds=10 * step), lag)
    assert trend.net_rate() == -2.0
    assert figures.drain(60, trend.net_rate()) == (30.0, False)
    assert figures.drain(60, 1.5) == (None, True)
    assert figures.drain(0, 3.0) == (0.0, False)
    assert figures.drain(5, None) == (None, False)
    assert figures.consume_rate(10.0, -2.0) == 12.0 and figures.consume_rate(1.0, 5.0) == 0.0


def test_unit_status_prefers_stalled_then_growing_then_lagging():
    assert figures.status(5, 10, 200, None, LIMITS)[0] == "stalled"
    assert figures.status(5, 10, 10, 40, LIMITS)[0] == "growing"
    assert figures.status(500, 10, 10, 10, LIMITS)[0] == "lagging"
    assert figures.status(5, 90, 10, None, LIMITS)[0] == "lagging"
    assert figures.status(0, 0, 999, 999, LIMITS) == ("ok", "")


def test_unit_the_most_specific_threshold_applies():
    rows = [(1, "", "", 10, 1, 1, 1, ""), (2, "ORDERS", "", 20, 1, 1, 1, ""), (3, "ORDERS", "billing", 30, 1, 1, 1, "u")]
    thresholds = Thresholds(rows)
    assert thresholds.for_consumer("ORDERS", "billing").threshold_id == 3
    assert thresholds.for_consumer("ORDERS", "shipping").threshold_id == 2
    assert thresholds.for_consumer("PAYMENTS", "x").limits.max_lag == 10
    assert Thresholds().for_consumer("A", "b").threshold_id is None


def test_unit_the_store_answers_the_oldest_message_only_when_it_holds_every_message_after_the_floor():
    rows = [(11, "orders.other", T0), (12, "orders.paid", T0 + timedelta(seconds=1))]
    assert _walk_store(rows, 10, ["orders.paid"], set(), 1) == (12, T0 + timedelta(seconds=1))
    assert _walk_store(rows, 10, [], set(), 1) == (11, T0)
    assert _walk_store(rows, 10, ["orders.paid"], {12}, 1) is None  # dead: keep looking, store exhausted
    assert _walk_store([(12, "orders.paid", T0)], 10, [], set(), 1) is None  # 11 missing: ask the stream
    assert _walk_store(rows, 10, [], set(), 12) is None  # 11 is no longer in the stream


def test_unit_consumer_list_entries_become_readings_with_their_configuration():
    info = {"stream_name": "ORDERS", "name": "billing", "created": "2026-11-30T12:00:00.123456789Z",
            "config": {"durable_name": "billing", "ack_policy": "explicit", "max_deliver": 3, "ack_wait": 30_000_000_000,
                       "filter_subjects": ["orders.created", "orders.paid"], "deliver_group": ""},
            "delivered": {"consumer_seq": 9, "stream_seq": 20, "last_active": "2026-11-30T12:01:00Z"},
            "ack_floor": {"consumer_seq": 7, "stream_seq": 15, "last_active": "0001-01-01T00:00:00Z"},
            "num_ack_pending": 2, "num_redelivered": 1, "num_waiting": 1, "num_pending": 4}
    reading = consumer_reading(info)
    assert (reading.lag, reading.processed_floor, reading.filters) == (6, 15, ["orders.created", "orders.paid"])
    assert reading.config["pull"] and reading.config["ack_wait_seconds"] == 30 and reading.last_active is None
    assert reading.created == datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert consumer_reading({**info, "name": "eventscope"}).observer
    assert parse_time("2026-11-30T13:00:00.5+01:00") == datetime(2026, 11, 30, 12, 0, 0, 500000, tzinfo=timezone.utc)
    limited = stream_reading({"config": {"name": "S", "max_age": 3_600_000_000_000}, "state": {"last_seq": 3}})
    assert limited.limited and limited.last_seq == 3


def test_unit_rows_without_figures_have_every_round_column():
    assert len(_figureless(1, T0, "gone", "why", "gone", True)) == len(ROUND_COLUMNS)


def test_unit_subject_patterns_become_sql_regular_expressions():
    assert re.match(subject_regex("orders.*"), "orders.created")
    assert not re.match(subject_regex("orders.*"), "orders.created.v2")
    assert re.match(subject_regex("orders.>"), "orders.created.v2")
    assert not re.match(subject_regex("orders.created"), "ordersXcreated")


def test_unit_copy_text_keeps_booleans_numbers_nulls_and_escapes_apart():
    from collector.lag.writer import copy_text

    row = (1, True, 0, False, 1.0, None, "a\tb\\c\nd", T0)
    assert copy_text([row, row]) == "1\tt\t0\tf\t1.0\t\\N\ta\\tb\\\\c\\nd\t2026-11-30T12:00:00+00:00\n" * 2
