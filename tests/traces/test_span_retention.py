"""Span retention takes the service and operation list with it."""
import dataclasses

from collector.models import SpanOperation
from collector.traces import writer as spanstore
from tests.traces.test_traces_pages import NOW_US, span, store

DAY_US = 86_400_000_000


def days_ago(found, days):
    return dataclasses.replace(found, start_us=NOW_US - days * DAY_US)


def test_prune_spans_drops_the_operations_no_span_is_left_for(transactional_db):
    """An operation last seen before the oldest day kept is gone from the lists; one seen
    since (even if also long ago) stays."""
    store([days_ago(span("a1" * 16, "1" * 16, service="legacy", operation="old job"), 10),
           days_ago(span("b2" * 16, "2" * 16, service="checkout", operation="place order"), 10),
           span("c3" * 16, "3" * 16, service="checkout", operation="place order")])
    assert SpanOperation.objects.filter(service="legacy").exists()
    spanstore.prune_spans(days=7)
    assert not SpanOperation.objects.filter(service="legacy").exists()
    assert SpanOperation.objects.filter(service="checkout", operation="place order").exists()
