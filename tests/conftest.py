import os
import shutil

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests
# make beside it are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
from django.contrib.auth.models import Group, User


@pytest.fixture(scope="session")
def nats_url():
    """The NATS of this test run: the embedded server `./eventscope test` started."""
    return os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


def _user(username, role):
    user = User.objects.create_user(username=username, password=f"{username}-password")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def alice(db):
    """Alice administers Eventscope."""
    return _user("alice", "admin")


@pytest.fixture
def bob(db):
    """Bob operates: he may retry, discard and publish."""
    return _user("bob", "operator")


@pytest.fixture
def charlie(db):
    """Charlie only views."""
    return _user("charlie", "viewer")


@pytest.fixture
def viewer_client(client, charlie):
    client.force_login(charlie)
    return client


@pytest.fixture
def operator_client(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def admin_client_(client, alice):
    client.force_login(alice)
    return client


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium (Debian's), driven by Playwright."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.skip("Chromium is missing: browser test skipped (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def browser_login(page, live_server, username, password):
    page.goto(live_server.url + "/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
