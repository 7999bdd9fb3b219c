"""`./eventscope up` (the supervisor behind it) brings Eventscope up on embedded servers,
serves the login page, stops every process on Ctrl-C and keeps the data for the next run."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def start(var):
    dropped = ("DATABASE_URL", "NATS_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_SUPERUSER_USERNAME",
               "DJANGO_SUPERUSER_PASSWORD")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(EVENTSCOPE_VAR=str(var), EVENTSCOPE_HTTP_PORT="18000")
    return subprocess.Popen([sys.executable, "-m", "runner", "up", "--no-demo"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_url(process, timeout=120):
    """The printed URL, and the generated admin password if one was printed."""
    deadline = time.monotonic() + timeout
    seen = []
    password = None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        generated = re.search(r"username: admin  password: (\S+)", line)
        if generated:
            password = generated.group(1)
        match = re.match(r"Eventscope: (http://127\.0\.0\.1:\d+/)$", line.strip())
        if match:
            return match.group(1), password
        if process.poll() is not None:
            break
    raise AssertionError("no URL printed:\n" + "".join(seen[-30:]))


def healthy(url, timeout=60):
    """The collector writes its first heartbeat a moment after the web server answers."""
    import urllib.error

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "healthz").status == 200:
                return True
        except urllib.error.HTTPError as error:
            assert error.code == 503
        time.sleep(0.5)
    return False


def assert_debug_is_off(url):
    """DEBUG stays off unless `--debug`: a missing page is a plain 404, not Django's debug
    page listing the URL patterns and settings."""
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url + "static/no-such-file.js")
    assert missing.value.code == 404
    body = missing.value.read().decode()
    assert "dashboard.urls" not in body and "DEBUG = True" not in body, body[:500]


def stop(process):
    descendants = psutil.Process(process.pid).children(recursive=True)
    assert len(descendants) >= 6  # three servers, web, collector, worker (and its pool)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    return process.returncode


def test_up_serves_the_login_page_stops_everything_on_ctrl_c_and_keeps_data(tmp_path):
    var = Path(tempfile.mkdtemp(prefix="up-", dir=ROOT / "var"))
    started = []
    try:
        first = start(var)
        started.append(first)
        url, password = wait_for_url(first)
        assert password, "the first run prints the generated admin password"
        page = urllib.request.urlopen(url + "accounts/login/").read().decode()
        assert 'name="username"' in page
        assert_debug_is_off(url)
        assert healthy(url), "healthz did not turn 200 (database, broker, Redis and collector up)"
        assert stop(first) == 0
        assert (var / "postgres" / "PG_VERSION").exists()

        second = start(var)
        started.append(second)
        url, again = wait_for_url(second)
        assert again is None  # no new admin: the first run's database was kept
        # ... and the password shown by the first run still logs in.
        import http.cookiejar

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = opener.open(url + "accounts/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        data = f"csrfmiddlewaretoken={token}&username=admin&password={password}&next=/".encode()
        request = urllib.request.Request(url + "accounts/login/", data=data, headers={"Referer": url})
        overview = opener.open(request).read().decode()
        assert "<h1>Overview</h1>" in overview
        assert stop(second) == 0
    finally:
        for process in started:
            if process.poll() is None:  # a failed assertion must not leave Eventscope running
                process.send_signal(signal.SIGINT)
                try:
                    process.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(var, ignore_errors=True)
