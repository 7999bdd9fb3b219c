"""In a real browser: a message published to NATS is found on the topic page and opens
on its own permalink, with its payload shown as text."""
import uuid

import pytest

from collector.models import Event
from tests.conftest import browser_login, nats_publish, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_published_message_is_found_on_its_topic_page_and_opens(run_collector, live_server, page, charlie,
                                                                  nats_url):
    stream = "BR" + uuid.uuid4().hex[:6].upper()
    subject = f"{stream.lower()}.order.created"
    running = run_collector()
    body = b'{"type": "order.created", "version": "2", "timestamp": "2026-11-27T10:00:00Z", "body": {"note": "<script>window.hacked=1</script>"}}'
    nats_publish(nats_url, [(subject, body, {"Micro-From-Service": "order"})], stream=stream,
                 subjects=[f"{stream.lower()}.>"])
    wait_until(lambda: Event.objects.filter(subject=subject).exists(), what="the message stored")

    browser_login(page, live_server, "charlie", "charlie-password")
    page.goto(live_server.url + "/topics/?last=15m")
    page.click(f"text={subject}")
    page.wait_for_url(f"**/topics/{subject}/**")
    assert page.locator("#events tbody tr").count() == 1
    assert "order.created" in page.inner_text("#events")
    page.click("#events tbody tr a")
    page.wait_for_url("**/events/*/")
    assert subject in page.inner_text("main")
    decoded = page.inner_text("#view-decoded")
    assert "<script>window.hacked=1</script>" in decoded  # shown as text ...
    assert page.evaluate("window.hacked === undefined")  # ... never run
    page.click("text=Hex")
    assert page.is_visible("#view-hex") and not page.is_visible("#view-decoded")
    running.stop()


def test_the_login_page_leads_to_the_overview_and_logout_back(live_server, page, charlie):
    page.goto(live_server.url + "/topics/")
    assert "/accounts/login/" in page.url
    browser_login(page, live_server, "charlie", "charlie-password")
    assert page.inner_text("h1") == "Overview"
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
