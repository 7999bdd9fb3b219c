"""What a user with an account but no role sees, in a real browser."""
import pytest

from tests.conftest import browser_login

pytestmark = [pytest.mark.browser]


def test_a_user_with_no_role_logs_in_and_sees_the_ask_an_admin_page(page, live_server, dave):
    browser_login(page, live_server, "dave", "dave-password")
    assert page.locator("#no-role").is_visible()
    assert "ask an admin" in page.locator("#no-role").inner_text()
    assert page.locator("table").count() == 0  # no data on the page
    response = page.goto(live_server.url + "/topics/")
    assert response.status == 403
    assert "ask an admin" in page.locator("#no-role").inner_text()
