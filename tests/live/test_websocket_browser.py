"""The live websocket from a real page in Chromium, served by the real web process
(daphne), under the Content-Security-Policy every page carries."""
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import pytest

from runner.servers import free_port, port_is_free
from tests.conftest import browser_login, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = [pytest.mark.browser]
APPLICATION_NAME = "eventscope-test-web"


@pytest.fixture
def web(live_server, tmp_path):
    """`daphne dashboard.asgi:application`, as compose runs it, on this test's database.
    It stands beside `live_server` (WSGI, no websockets) rather than replacing it: taking
    `live_server` as the other browser tests do keeps their database handling (with
    `transactional_db` alone a connection stays open and the test database cannot be dropped)."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    query = "&".join(filter(None, [parts.query, f"application_name={APPLICATION_NAME}"]))
    database_url = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"], query=query))
    port = free_port(18600)
    log = tmp_path / "web.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
             "dashboard.asgi:application"],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url}, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_until(lambda: not port_is_free(port) or process.poll() is not None, 30, "daphne to listen")
        assert process.poll() is None, log.read_text()[-2000:]
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        # Its database sessions end a moment after it exits; the test database is dropped later.
        wait_until(lambda: not _sessions(), 10, "the web process's database sessions to end")


def _sessions():
    import psycopg

    from collector.db import conninfo

    with psycopg.connect(conninfo()) as conn:
        return conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                            [APPLICATION_NAME]).fetchall()


OPEN_SOCKETS = """
async ([own, foreign]) => {
  const blocked = [];
  document.addEventListener("securitypolicyviolation", (event) => blocked.push(event.blockedURI));
  const attempt = (url) => new Promise((resolve) => {
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      resolve("refused: " + error.name);
      return;
    }
    socket.onopen = () => { socket.close(); resolve("open"); };
    socket.onerror = () => resolve("error");
    setTimeout(() => resolve("timeout"), 5000);
  });
  const ownResult = await attempt(own);
  const foreignResult = await attempt(foreign);
  await new Promise((resolve) => setTimeout(resolve, 300));  // violation events are queued
  return {own: ownResult, foreign: foreignResult, blocked};
}
"""


def test_a_page_opens_the_live_websocket_to_its_own_origin_and_no_other(web, page, charlie):
    """`connect-src 'self'`: the page's own `/ws/events/` opens (logged in, same origin);
    a websocket to any other host is blocked by the browser before it connects."""
    browser_login(page, web, "charlie", "charlie-password")
    assert "connect-src 'self'" in page.goto(web.url + "/").headers["content-security-policy"]
    own = f"ws://127.0.0.1:{web.port}/ws/events/"
    foreign = f"ws://localhost:{web.port}/ws/events/"  # the same server under another host name
    result = page.evaluate(OPEN_SOCKETS, [own, foreign])
    assert result["own"] == "open", result
    assert result["foreign"] != "open", result
    assert any(uri.startswith("ws://localhost") for uri in result["blocked"]), result
