"""Repeated failed logins lock out the user name and the address apart (django-axes);
while locked even the right password is refused, and each lockout is on the audit log."""
import pytest
from django.conf import settings
from django.test import Client

from collector.models import AuditEntry

LIMIT = settings.AXES_FAILURE_LIMIT


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    """A dozen logins a test: the production hasher's deliberate slowness is not under test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(username, password, address):
    client = Client(REMOTE_ADDR=address)
    return client, client.post("/accounts/login/", {"username": username, "password": password})


def test_n_failed_logins_for_one_user_name_lock_it_out_from_every_address(charlie):
    for attempt in range(LIMIT - 1):
        _, response = log_in("charlie", "wrong", f"10.0.0.{attempt + 1}")
        assert response.status_code == 200  # the form again, with its error
    _, response = log_in("charlie", "wrong", "10.0.0.99")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    client, response = log_in("charlie", "charlie-password", "10.0.1.1")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    entries = list(AuditEntry.objects.filter(action="login lockout").order_by("id"))
    assert entries[0].user == charlie and entries[0].detail["username"] == "charlie"
    assert entries[0].result == f"locked out after {LIMIT} failed logins"
    assert entries[-1].detail["ip_address"] == "10.0.1.1"  # the refused right password
    # The audit page shows it to whoever may read it.
    reader = Client()
    reader.force_login(charlie)
    assert b"login lockout" in reader.get("/audit/").content


def test_n_failed_logins_from_one_address_lock_that_address_out_for_every_user(charlie, bob):
    for attempt in range(LIMIT):
        log_in(f"nobody{attempt}", "wrong", "192.0.2.7")
    _, response = log_in("charlie", "charlie-password", "192.0.2.7")
    assert response.status_code == 429
    entry = AuditEntry.objects.filter(action="login lockout").order_by("id").first()
    assert entry.detail["ip_address"] == "192.0.2.7" and entry.user is None
    # Another address still logs in.
    client, response = log_in("bob", "bob-password", "192.0.2.8")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(bob.pk)


def test_a_correct_password_before_the_limit_logs_in_and_starts_the_count_again(charlie):
    for _ in range(LIMIT - 1):
        log_in("charlie", "wrong", "198.51.100.1")
    client, response = log_in("charlie", "charlie-password", "198.51.100.1")
    assert response.status_code == 302
    for _ in range(LIMIT - 1):
        log_in("charlie", "wrong", "198.51.100.1")
    _, response = log_in("charlie", "charlie-password", "198.51.100.1")
    assert response.status_code == 302
    assert not AuditEntry.objects.filter(action="login lockout").exists()
