"""In a real browser: a viewer opens /versions/ from the navigation, follows a type to its page,
sees the share chart drawn (a uPlot canvas) and switches the field diff between two versions,
with no script or style refused by the CSP."""
import pytest

from tests.conftest import browser_login
from tests.versions.conftest import publish_envelopes, stored, unique

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_viewer_opens_both_version_pages_and_switches_the_diff(live_server, page, charlie, versions_collector,
                                                                  nats_url):
    stream, subject, type_ = unique("VERB"), unique("verb.") + ".created", unique("shop") + ".order.created"
    publish_envelopes(nats_url, stream, subject,
                      [(type_, 1, {"item": "mug", "qty": 1})] * 3
                      + [(type_, 2, {"sku": "mug", "qty": 1, "currency": "EUR"})] * 3
                      + [(type_, 3, {"sku": "mug", "qty": "1", "currency": "EUR", "gift": True})] * 2)
    stored(type_, 8)
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and "/ws/events/" not in message.text else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    browser_login(page, live_server, "charlie", "charlie-password")
    page.goto(f"{live_server.url}/")
    page.click("nav.mainnav >> text=Versions")
    page.wait_for_url("**/versions/**")
    rows = page.locator(f'#versions tr[data-type="{type_}"]')
    assert rows.count() == 3
    assert "current" in rows.nth(2).inner_text() and "superseded" in rows.nth(0).inner_text()
    page.click(f"#versions a:text-is('{type_}')")
    page.wait_for_url(f"**/versions/{type_}/**")
    page.wait_for_selector("#version-chart .uplot canvas", timeout=10000)
    assert page.locator("#version-chart .uplot canvas").bounding_box()["width"] > 300
    assert "v3" in page.inner_text("#version-chart")

    # The two newest by default: v2 -> v3.
    assert page.inner_text("#diff-table caption") == "v2 → v3"
    changes = {row.get_attribute("data-path"): row.get_attribute("data-change")
               for row in page.locator("#diff-table tbody tr[data-path]").all()}
    assert changes == {"gift": "added", "qty": "type changed"}

    page.select_option("#diff-switcher select[name=left]", "1")
    page.wait_for_url("**left=1**")
    page.wait_for_selector("#diff-table[data-left='1']")
    assert page.inner_text("#diff-table caption") == "v1 → v3"
    changes = {row.get_attribute("data-path"): row.get_attribute("data-change")
               for row in page.locator("#diff-table tbody tr[data-path]").all()}
    assert changes == {"item": "removed", "sku": "added", "currency": "added", "gift": "added",
                       "qty": "type changed"}
    assert "last=" in page.url  # the window stays in the link
    assert not problems, problems
