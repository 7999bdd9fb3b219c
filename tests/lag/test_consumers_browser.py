"""In a real browser: a viewer opens /consumers/, follows a lagging consumer to its page and
sees the lag chart drawn (a uPlot canvas), with no script or style refused by the CSP."""
import time

import pytest

from collector.models import Consumer
from tests.conftest import browser_login, wait_until
from tests.lag.conftest import (
    add_pull_consumer,
    consumer_row,
    make_stream,
    publish,
    unique,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_viewer_opens_the_consumers_then_one_consumer_and_sees_its_chart_drawn(
        live_server, page, charlie, lag_collector, nats_url):
    stream = unique("LAGB")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    add_pull_consumer(nats_url, stream, "inventory", f"{stream.lower()}.orders")
    for _ in range(3):
        publish(nats_url, f"{stream.lower()}.orders", 4)
        time.sleep(1.1)
    consumer = consumer_row(stream, "inventory")
    wait_until(lambda: Consumer.objects.get(pk=consumer.pk).lag == 12, 10, "the lag sampled")
    problems = []
    # This test's server speaks HTTP only: the overview's live socket (tested against daphne in
    # tests/live/) cannot connect here, and says so in the console; every other error counts.
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and "/ws/events/" not in message.text else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    browser_login(page, live_server, "charlie", "charlie-password")
    page.goto(f"{live_server.url}/")
    page.click("nav.mainnav >> text=Consumers")
    page.wait_for_url("**/consumers/**")
    row = page.locator("#consumers tr", has_text=stream)  # other tests' streams have an inventory too
    assert "12" in row.inner_text()
    assert row.locator("svg.sparkline polyline").count() == 1
    row.locator("a", has_text="inventory").click()
    page.wait_for_url(f"**/consumers/{stream}/inventory/**")
    page.wait_for_selector("#lag-chart .uplot canvas", timeout=10000)
    box = page.locator("#lag-chart .uplot canvas").bounding_box()
    assert box["width"] > 300 and box["height"] > 100
    # The series reached the chart: uPlot's legend shows the last lag value.
    assert "Lag (messages)" in page.inner_text("#lag-chart")
    drawn = page.evaluate("document.querySelector('#lag-chart').lagChart.data[1].filter(v => v !== null).length")
    assert drawn >= 3
    assert "12" in page.inner_text("#figures")
    assert "Where its messages went" in page.inner_text("main")
    assert not problems, problems
