"""In a real browser: a viewer opens /consumers/, follows a Kafka consumer group to its page
and sees its lag chart drawn, and its partitions with the hot one first."""
import time

import pytest

from tests.conftest import browser_login, kafka_produce, kafka_topics, wait_until
from tests.lag.test_kafka_lag import KafkaApp, kafka_lag_collector, latest, unique  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_viewer_sees_a_kafka_groups_lag_chart_and_its_hot_partition(
        live_server, page, charlie, kafka_lag_collector, kafka_bootstrap):  # noqa: F811
    topic, group = unique("carts"), unique("pricing")
    kafka_topics(kafka_bootstrap, {topic: 2})
    app = KafkaApp(kafka_bootstrap, group, topic)
    try:
        for round_ in range(3):  # the lag grows over three samples, mostly on one partition
            kafka_produce(kafka_bootstrap, [(topic, b"hot-cart", b"{}", None)] * 5 + [(topic, b"k%d" % round_, b"{}", None)])
            app.commit({0: 0, 1: 0})
            time.sleep(1.1)
        consumer = wait_until(lambda: (c := latest(topic, group)) and c.lag == 18 and c, 30, "the lag sampled")
        hot = consumer.config["hot_partition"]
    finally:
        app.stop()
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and "/ws/events/" not in message.text else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    browser_login(page, live_server, "charlie", "charlie-password")
    page.goto(f"{live_server.url}/consumers/")
    row = page.locator("#consumers tr", has_text=topic)
    assert group in row.inner_text() and "18" in row.inner_text()
    row.locator("a", has_text=group).click()
    page.wait_for_url(f"**/consumers/{topic}/{group}/**")
    page.wait_for_selector("#lag-chart .uplot canvas", timeout=10000)
    box = page.locator("#lag-chart .uplot canvas").bounding_box()
    assert box["width"] > 300 and box["height"] > 100
    drawn = page.evaluate("document.querySelector('#lag-chart').lagChart.data[1].filter(v => v !== null).length")
    assert drawn >= 2
    first_partition = page.locator("#partitions tbody tr").first.locator("td").first.inner_text()
    assert first_partition == str(hot)
    assert "Consumer group" in page.inner_text("#config") and "partitioned by key" in page.inner_text("#config")
    assert not problems, problems
