"""The pure helpers behind trace search and the RED view."""
import pytest

from collector.models.traces import DURATION_BUCKETS_US
from collector.traces.readers import BadQuery, normalise_trace_id, parse_duration_us, parse_tags, percentile


def test_trace_ids_are_lowercased_and_64_bit_ids_left_padded_to_32_digits():
    assert normalise_trace_id(" ABCDEF ") == "0" * 26 + "abcdef"
    assert normalise_trace_id("a" * 32) == "a" * 32
    assert normalise_trace_id("a" * 33) is None
    assert normalise_trace_id("xyz") is None


def test_durations_take_units_and_a_bare_number_means_milliseconds():
    assert parse_duration_us("250ms") == 250_000
    assert parse_duration_us("1.5s") == 1_500_000
    assert parse_duration_us("300us") == 300
    assert parse_duration_us("2m") == 120_000_000
    assert parse_duration_us("40") == 40_000
    assert parse_duration_us("") is None
    with pytest.raises(BadQuery):
        parse_duration_us("soon")


def test_tag_filters_split_on_spaces_or_commas_and_keep_values_with_spaces_out():
    assert parse_tags("http.status_code=500 order.id=o-17") == {"http.status_code": "500", "order.id": "o-17"}
    assert parse_tags(["a=1, b=2", "c=x=y"]) == {"a": "1", "b": "2", "c": "x=y"}
    with pytest.raises(BadQuery):
        parse_tags("novalue")


def test_percentiles_interpolate_inside_the_histogram_bucket():
    buckets = [0] * (len(DURATION_BUCKETS_US) + 1)
    index = DURATION_BUCKETS_US.index(100_000)  # bucket [100 ms, 250 ms)
    buckets[index + 1] = 100
    assert 100_000 <= percentile(buckets, 0.5) <= 250_000
    assert percentile(buckets, 0.5) < percentile(buckets, 0.99)
    assert percentile([0] * len(buckets), 0.5) is None
