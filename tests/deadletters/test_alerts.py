"""Dead-letter alerts: a crossing is recorded once however many collectors check at the same
moment, the collector never waits on a webhook (a real worker posts it), and a webhook may
not reach link-local or metadata addresses ever, nor loopback and private ones unless the
admin allows private targets."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from collector.deadletters import alerts, webhooks
from collector.models import DeadLetterAlert, DeadLetterSettings, DeadLetterThreshold
from tests.conftest import wait_until
from tests.deadletters.conftest import letter


class Hook:
    """A real HTTP endpoint on loopback that records each POST and answers after `delay` s."""

    def __init__(self, delay=0.0, status=204):
        self.received = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(delay)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host="127.0.0.1"):
        return f"http://{host}:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    made = []

    def make(**options):
        made.append(Hook(**options))
        return made[-1]

    yield make
    for server in made:
        server.close()


def allow_private_targets(allowed=True):
    row = DeadLetterSettings.load()
    row.allow_private_webhooks = allowed
    row.save()


def crossing(broker, webhook="", pattern="orders.*", dead=6):
    """A threshold of five in ten minutes on `pattern`, and `dead` dead letters that cross it."""
    threshold = DeadLetterThreshold.objects.create(subject_pattern=pattern, count=5, minutes=10, webhook=webhook)
    topic = pattern.replace("*", "created")
    for _ in range(dead):
        letter(broker, topic)
    return threshold


def test_a_crossing_is_recorded_at_once_and_a_real_worker_posts_it(broker, hook, celery_worker_thread):
    """The webhook takes two seconds to answer; the collector's check does not wait for it.
    The worker posts the JSON summary once; a second check in the window raises nothing."""
    allow_private_targets()
    slow = hook(delay=2.0)
    threshold = crossing(broker, webhook=slow.url())
    letter(broker, "payments.failed")

    started = time.monotonic()
    [alert] = alerts.check_thresholds()
    assert time.monotonic() - started < 1.0
    assert alerts.check_thresholds() == []
    assert alert.delivery == "pending" and alert.window_start <= alert.at

    wait_until(lambda: DeadLetterAlert.objects.get(pk=alert.pk).delivery == "posted", 20, "the worker to post it")
    alert.refresh_from_db()
    assert alert.notified == "posted: HTTP 204" and alert.delivered_at is not None
    assert slow.received == [{"alert": alert.id, "threshold": str(threshold), "count": 6,
                              "subjects": {"orders.created": 6}, "since": alert.detail["since"]}]
    assert DeadLetterAlert.objects.count() == 1


def test_collectors_checking_at_the_same_moment_record_each_crossing_once(broker):
    """Four collectors (threads, each with its own database connection) check five crossed
    thresholds at once: five alerts, one per threshold."""
    thresholds = [crossing(broker, pattern=f"t{n}.*") for n in range(5)]
    start = threading.Barrier(4)
    raised, errors = [], []

    def collector():
        try:
            start.wait(10)
            raised.extend(alerts.check_thresholds())
        except Exception as error:  # reported below: a thread's failure must fail the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=collector) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(a.threshold_id for a in raised) == [t.id for t in thresholds]
    assert sorted(DeadLetterAlert.objects.values_list("threshold_id", flat=True)) == [t.id for t in thresholds]


def test_a_loopback_webhook_is_refused_until_private_targets_are_allowed(broker, hook, celery_worker_thread):
    """With the admin setting off (the default) the worker refuses a webhook on 127.0.0.1, and
    one whose name (localhost) resolves to loopback, and sends nothing; allowed, it posts."""
    local = hook()
    by_address = crossing(broker, webhook=local.url(), pattern="a.*")
    by_name = crossing(broker, webhook=local.url("localhost"), pattern="b.*")
    assert len(alerts.check_thresholds()) == 2
    for threshold in (by_address, by_name):
        wait_until(lambda: DeadLetterAlert.objects.get(threshold=threshold).delivery == "refused", 20, "the refusal")
    notes = sorted(DeadLetterAlert.objects.values_list("notified", flat=True))
    assert notes[0].startswith("refused: 127.0.0.1 is a loopback or private address")
    assert notes[1].startswith("refused: localhost resolves to ") and "'allow private webhook targets' is off" in notes[1]
    assert local.received == []

    allow_private_targets()
    crossing(broker, webhook=local.url(), pattern="c.*")
    [alert] = alerts.check_thresholds()
    wait_until(lambda: DeadLetterAlert.objects.get(pk=alert.pk).delivery == "posted", 20, "the post")
    assert len(local.received) == 1


def test_a_failing_or_redirecting_webhook_is_recorded_as_not_posted(broker, hook, celery_worker_thread):
    allow_private_targets()
    failing, moved = hook(status=500), hook(status=302)
    crossing(broker, webhook=failing.url(), pattern="f.*")
    crossing(broker, webhook=moved.url(), pattern="m.*")
    assert len(alerts.check_thresholds()) == 2
    wait_until(lambda: set(DeadLetterAlert.objects.values_list("delivery", flat=True)) == {"failed"}, 20,
               "both deliveries")
    assert sorted(DeadLetterAlert.objects.values_list("notified", flat=True)) == [
        "not posted: HTTP 302 (redirects are not followed)", "not posted: HTTP 500"]


def test_the_send_alert_task_run_twice_for_one_alert_posts_once(broker, hook):
    """The task's body, called twice in this thread as a redelivered task would run it: the
    second run finds the alert claimed and sends nothing."""
    from dashboard.deadletters.tasks import send_alert

    allow_private_targets()
    local = hook()
    crossing(broker, webhook=local.url())
    [alert] = alerts.check_thresholds()
    assert send_alert(alert.id) == "posted: HTTP 204"
    assert send_alert(alert.id) == "taken by another worker"
    assert len(local.received) == 1


# --- where a webhook may go (no request is sent by these) --------------------------------------


ALWAYS_REFUSED = [
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://169.254.10.1/", "a link-local address"),
    ("http://[fe80::1]/hook", "a link-local address"),
    ("http://[::ffff:169.254.169.254]/", "a cloud metadata address"),
    ("http://[fd00:ec2::254]/", "a cloud metadata address"),
    ("http://100.100.100.200/", "a cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "a cloud metadata host"),
    ("http://0.0.0.0:8000/", "not a unicast address"),
    ("ftp://example.com/hook", "http:// or https://"),
]


@pytest.mark.parametrize("url, reason", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_unit_link_local_metadata_and_odd_targets_are_refused_even_with_private_targets_allowed(url, reason,
                                                                                                allow_private):
    with pytest.raises(webhooks.Refused, match=reason.replace("/", ".")):
        webhooks.checked_addresses(url, allow_private)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://10.1.2.3/", "http://172.20.0.5/",
                                 "http://192.168.0.10/", "http://[::1]/", "http://[fd12::1]/", "http://localhost/"])
def test_unit_loopback_and_private_targets_are_refused_unless_allowed(url):
    with pytest.raises(webhooks.Refused, match="'allow private webhook targets' is off"):
        webhooks.checked_addresses(url, allow_private=False)
    assert webhooks.checked_addresses(url, allow_private=True)


def test_unit_a_name_is_refused_when_any_address_it_resolves_to_is():
    """A name with a public and a metadata address is refused: every address is checked."""

    def resolve(host, port, type):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in ("93.184.216.34", "169.254.169.254")]

    with pytest.raises(webhooks.Refused, match="hooks.example resolves to 169.254.169.254, which is a cloud"):
        webhooks.checked_addresses("https://hooks.example/x", allow_private=True, resolve=resolve)


def test_the_admin_form_refuses_a_metadata_or_link_local_webhook(db):
    for url in ("http://169.254.169.254/latest/", "http://metadata.google.internal/", "http://[fe80::1]/"):
        with pytest.raises(ValidationError) as refused:
            DeadLetterThreshold(webhook=url).full_clean()
        assert "webhook" in refused.value.message_dict
    DeadLetterThreshold(webhook="https://hooks.example.com/eventscope").full_clean()
