"""In a real browser, with a real Celery worker: an operator retries a RabbitMQ dead letter
(captured from its dead-letter exchange) and the mail goes back to its queue once."""
import pytest

from tests.brokers.rabbit import queue_depth, take_all
from tests.conftest import browser_login, run_async, wait_until
from tests.deadletters.test_dead_letters_browser import reload_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_operator_retries_a_rabbitmq_dead_letter_from_its_page(bounced, live_server, page, bob,
                                                                   celery_worker_thread):
    _, dead, url = bounced
    browser_login(page, live_server, "bob", "bob-password")
    page.goto(f"{live_server.url}/dlq/?last=15m")
    page.click(f"#dead-letters a[href='/dlq/{dead.id}/']")
    page.wait_for_url(f"**/dlq/{dead.id}/")
    main = page.inner_text("main")
    assert "rejected" in main and "mailer" in main
    page.click("#retry")
    page.wait_for_load_state()
    assert "Retry 1 queued" in page.inner_text(".flash")
    reload_until(page, "#retries", "republished")
    wait_until(lambda: queue_depth(url, "mailer") == 1, 15, "the mail back in the mailer queue")
    [sent] = run_async(take_all(url, "mailer"))
    assert sent.message_id == f"eventscope-retry-{dead.id}-1"
