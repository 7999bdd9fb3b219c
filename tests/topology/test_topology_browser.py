"""The topology page in a real headless Chromium: the graph of a known system (built
through NATS, the collector and the real span exporter) is drawn, a service is searched
and clicked, and its page opens, with nothing refused by the Content-Security-Policy."""
from datetime import UTC

import pytest

from collector.models import Broker
from collector.topology import readers
from tests.conftest import browser_login
from tests.topology.test_known_system import known_system, wait_for_everything  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => window.__violations.push(
  `${event.violatedDirective} ${event.blockedURI}`));
"""

NODE_POSITION = """
(id) => {
  const cy = document.getElementById("topology-graph").cy;
  const node = cy.getElementById(id);
  if (node.empty()) return null;
  const box = document.getElementById("topology-graph").getBoundingClientRect();
  const at = node.renderedPosition();
  return {x: box.left + at.x, y: box.top + at.y};
}
"""


def test_a_user_searches_a_service_in_the_graph_clicks_it_and_lands_on_its_page(
        known_system, live_server, page, charlie):  # noqa: F811 (the fixture imported above)
    x = known_system
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    wait_for_everything(lambda: readers.graph(now - timedelta(minutes=10), now + timedelta(minutes=1)), x,
                        Broker.objects.get().name)
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(WATCH_CSP)
    browser_login(page, live_server, "charlie", "charlie-password")

    page.click("nav.mainnav a:has-text('Topology')")
    page.wait_for_selector("#topology[data-drawn]")
    assert "last=" in page.url or page.url.endswith("/topology/")
    assert page.evaluate("() => document.getElementById('topology-graph').cy.nodes().length") > 0

    page.fill("#topology-search", f"inventory_{x}")
    page.press("#topology-search", "Enter")
    page.wait_for_function("() => document.getElementById('topology-graph').cy.$('node.match').length === 1")
    # Focused on its neighbourhood: the service, its group, the topic and what the topic touches within a hop.
    drawn = page.evaluate("() => document.getElementById('topology-graph').cy.nodes().map((n) => n.id())")
    assert f"service:inventory_{x}" in drawn and f"service:gateway_{x}" not in drawn
    assert f"inventory_{x}" in page.locator("#topology-detail").inner_text()

    at = page.evaluate(NODE_POSITION, f"service:inventory_{x}")
    page.mouse.click(at["x"], at["y"])
    page.wait_for_url(f"**/services/inventory_{x}/**")
    assert page.locator("#service-name").inner_text() == f"inventory_{x}"
    assert f"orders_{x}.created" in page.locator("#consumes").inner_text()
    assert "service taken from its name" in page.locator("#consumes").inner_text()
    page.wait_for_selector("#topology[data-drawn]")  # its neighbourhood graph

    assert page.evaluate("() => window.__violations") == []
    assert not [line for line in console if "Content Security Policy" in line or "Refused" in line]
