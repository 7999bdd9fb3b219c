"""The trace pages in a real headless Chromium: a trace exported by the real OTLP
exporter is searched, opened, and a span link scrolls to and highlights its span."""
import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

from tests.conftest import browser_login
from tests.traces.test_traces_ingest import export_trace, hex_trace, span_collector, stored_spans  # noqa: F401 (fixture)
from tests.traces.test_traces_pages import span, store

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_a_user_finds_an_exported_trace_opens_its_waterfall_and_follows_a_span_link(
        span_collector, live_server, page, charlie):  # noqa: F811 (the fixture imported above)
    parent, child = export_trace(HttpExporter(endpoint=span_collector.otlp_http), service="storefront",
                                 root="GET /basket")
    trace_id = hex_trace(parent)
    stored_spans(trace_id, 2)
    browser_login(page, live_server, "charlie", "charlie-password")

    page.goto(live_server.url + "/traces/?last=15m")
    page.select_option("select[name=service]", "storefront")
    page.click("#trace-search button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#traces tbody tr").count() == 1
    page.click(f"#traces tbody tr:has-text('{trace_id}') a >> nth=0")
    page.wait_for_selector("#waterfall[data-ready=true]")
    assert page.locator(".wf-row").count() == 2
    assert page.locator(".wf-row .wf-err").count() == 1  # the declined charge is marked

    page.click(".wf-row:has-text('charge')")
    assert "card declined" in page.locator("#span-details").inner_text()
    child_id = f"{child.context.span_id:016x}"
    assert f"span={child_id}" in page.url
    assert page.get_attribute("#copy-span-link", "data-copy").endswith(f"span={child_id}")

    # The copied link, opened afresh, highlights that span and shows its details.
    page.goto(page.url)
    page.wait_for_selector("#waterfall[data-ready=true]")
    assert page.locator(".wf-row.selected").get_attribute("data-span-id") == child_id
    assert "declined" in page.locator("#span-details").inner_text()


def test_a_5000_span_trace_renders_only_the_rows_on_screen_and_scrolls_to_a_deep_span(
        live_server, page, charlie, transactional_db):
    trace_id = "ee" * 16
    spans = [span(trace_id, f"{1:016x}", duration=10_000_000)]
    spans += [span(trace_id, f"{i:016x}", parent=f"{1 + (i - 2) // 4 if i > 5 else 1:016x}",
                   service=f"svc{i % 7}", operation=f"op{i % 13}", start=i * 1000, duration=1500)
              for i in range(2, 5001)]
    store(spans)
    browser_login(page, live_server, "charlie", "charlie-password")
    started = time.monotonic()
    page.goto(f"{live_server.url}/traces/{trace_id}/?span={4321:016x}")
    page.wait_for_selector("#waterfall[data-ready=true]")
    elapsed = time.monotonic() - started
    assert page.locator(".wf-row").count() < 150
    assert page.locator(".wf-row.selected").get_attribute("data-span-id") == f"{4321:016x}"
    assert elapsed < 10, f"the 5,000-span page took {elapsed:.1f} s"
    page.locator(".wf-view").evaluate("view => { view.scrollTop = view.scrollHeight; }")
    page.wait_for_timeout(100)
    assert page.locator(".wf-row").count() < 150


def test_load_more_spans_adds_the_next_page_of_a_trace_past_the_span_cap(live_server, page, charlie, transactional_db):
    from dashboard.traces.views import SPAN_PAGE

    trace_id = "dd" * 16
    total = SPAN_PAGE + 150
    store([span(trace_id, f"{1:016x}", duration=10_000_000)]
          + [span(trace_id, f"{i:016x}", parent=f"{1:016x}", start=i * 1000, duration=500) for i in range(2, total + 1)])
    browser_login(page, live_server, "charlie", "charlie-password")
    page.goto(f"{live_server.url}/traces/{trace_id}/")
    page.wait_for_selector("#waterfall[data-ready=true]")
    assert page.locator("#span-cap").is_visible()
    assert page.locator(".wf-count").inner_text().startswith(f"{SPAN_PAGE} of {total} spans shown")
    page.click("[data-load-more]")
    page.locator("[data-load-more]").wait_for(state="detached")
    assert page.locator(".wf-count").inner_text().startswith(f"{total} spans ·")
    # The last span, only on the second page, is there to click.
    page.locator(".wf-view").evaluate("view => { view.scrollTop = view.scrollHeight; }")
    page.click(f".wf-row[data-span-id='{total:016x}']")
    assert f"span={total:016x}" in page.url
