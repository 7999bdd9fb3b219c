"""In a real browser, with a real Celery worker on Redis: an operator retries a dead
letter and watches it republished, then consumed; a viewer finds no button and a forged
POST is refused."""
import threading
import uuid

import pytest

from collector.deadletters import capture
from collector.models import DeadLetter
from tests.conftest import RunningCollector, browser_login, nats_publish, wait_until
from tests.deadletters.conftest import failing_consumer, letter, make_stream

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def reload_until(page, selector, text, timeout=30):
    def shown():
        page.reload()
        return text in page.inner_text(selector)

    wait_until(shown, timeout, f"{text!r} in {selector}")


def test_an_operator_retries_a_dead_letter_and_sees_it_republished_then_consumed(
        live_server, page, bob, celery_worker_thread, nats_url):
    stream = "BRD" + uuid.uuid4().hex[:6].upper()
    subject = f"{stream.lower()}.order.created"
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    running = RunningCollector(installs=[capture.install])
    fixed = threading.Event()
    thread, stop = failing_consumer(nats_url, stream, subject, "billing", until=fixed)
    try:
        nats_publish(nats_url, [(subject, b'{"order": 42}', {"X-Customer": "7"})])
        dead = wait_until(lambda: DeadLetter.objects.filter(stream=stream).first(), 20, "the dead letter")
        fixed.set()  # the billing service is fixed: the retry will be taken

        browser_login(page, live_server, "bob", "bob-password")
        page.goto(f"{live_server.url}/dlq/?last=15m")
        page.click(f"#dead-letters a[href='/dlq/{dead.id}/']")
        page.wait_for_url(f"**/dlq/{dead.id}/")
        assert "max deliveries" in page.inner_text("main")
        page.click("#retry")
        page.wait_for_load_state()
        assert "Retry 1 queued" in page.inner_text(".flash")
        reload_until(page, "#retries", "republished")
        reload_until(page, "#retries", "consumed")
        assert "billing" in page.inner_text("main")
        assert page.locator("#retry").inner_text() == "Retry again"
    finally:
        stop.set()
        running.stop()


def test_a_viewer_finds_no_retry_button_and_a_forged_post_is_refused(live_server, page, charlie):
    from collector.models import Broker

    broker = Broker.objects.update_or_create(name="nats", defaults={"url": "nats://127.0.0.1:4222"})[0]
    dead = letter(broker, "orders.created")
    browser_login(page, live_server, "charlie", "charlie-password")
    page.goto(f"{live_server.url}/dlq/{dead.id}/")
    assert "orders.created" in page.inner_text("main")
    assert page.locator("#retry").count() == 0 and page.locator("#actions").count() == 0
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    forged = page.request.post(f"{live_server.url}/dlq/{dead.id}/retry/",
                               form={"attempt": "0", "csrfmiddlewaretoken": token}, max_redirects=0)
    assert forged.status == 403
    dead.refresh_from_db()
    assert dead.attempt == 0 and dead.status == "new"
