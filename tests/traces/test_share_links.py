"""Share links as issued rows: refused in read-only mode, limited at use by today's
longest life, revoked one by one or all at once in the admin (on the audit log), and a
shared trace gone by retention answers 410 with the date."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone as django_timezone

from collector.models import AuditEntry, RuntimeSettings
from collector.models.traces import ShareLink, TraceSettings
from collector.traces import Span
from collector.traces import writer as spanstore
from tests.traces.test_traces_pages import NOW_US, T1, T2, make_share_link, span, store, traces  # noqa: F401


@pytest.mark.usefixtures("traces")
def test_no_share_link_is_made_in_read_only_mode_and_the_button_is_gone(operator_client):
    RuntimeSettings.objects.update_or_create(pk=1, defaults={"read_only": True})
    response = operator_client.post(reverse("trace_share_create", args=[T1]), {"expires": "1h"})
    assert response.status_code == 403
    assert b"read-only" in response.content
    assert not ShareLink.objects.exists()
    assert b"Share read-only link" not in operator_client.get(reverse("trace", args=[T1])).content


@pytest.mark.usefixtures("traces")
def test_lowering_the_longest_life_shortens_links_already_issued(operator_client, client, monkeypatch):
    """A 7-day link made when 7 days were allowed stops after 1 day once admins allow 1 day."""
    import time

    url = make_share_link(operator_client, T1, expires="7d")
    TraceSettings.objects.update_or_create(pk=1, defaults={"share_link_max_days": 1})
    later = django_timezone.now() + timedelta(hours=25)
    monkeypatch.setattr(django_timezone, "now", lambda: later)
    monkeypatch.setattr(time, "time", lambda: later.timestamp())
    response = client.get(url)
    assert response.status_code == 403
    assert b"expired" in response.content
    TraceSettings.objects.update_or_create(pk=1, defaults={"share_link_max_days": 7})
    assert client.get(url).status_code == 200


@pytest.mark.usefixtures("traces")
def test_an_admin_lists_and_revokes_one_link_and_the_audit_log_shows_who(operator_client, client, alice):
    first = make_share_link(operator_client, T1)
    second = make_share_link(operator_client, T2)
    admin = client
    admin.force_login(alice)
    listing = admin.get(reverse("admin:collector_sharelink_changelist")).content.decode()
    assert T1 in listing and T2 in listing and "bob" in listing
    link = ShareLink.objects.get(trace_id=T1)
    response = admin.post(reverse("admin:collector_sharelink_changelist"),
                          {"action": "revoke_selected", "_selected_action": [link.pk]})
    assert response.status_code == 302
    admin.logout()
    response = client.get(first)
    assert response.status_code == 403 and b"revoked" in response.content
    assert client.get(second).status_code == 200
    entry = AuditEntry.objects.get(action="revoke share link")
    assert (entry.user, entry.target, entry.detail["link"], entry.detail["created_by"]) == (alice, T1, link.pk, "bob")


@pytest.mark.usefixtures("traces")
def test_an_admin_revokes_every_link_at_once(operator_client, client, alice):
    urls = [make_share_link(operator_client, T1), make_share_link(operator_client, T1, "1h"),
            make_share_link(operator_client, T2)]
    client.force_login(alice)
    page = client.get(reverse("admin:collector_sharelink_revoke_all"))
    assert page.status_code == 200 and b"3 share links still open" in page.content
    assert b"revoke-all-links" in client.get(reverse("admin:collector_sharelink_changelist")).content
    assert client.post(reverse("admin:collector_sharelink_revoke_all")).status_code == 302
    client.logout()
    assert [client.get(url).status_code for url in urls] == [403, 403, 403]
    assert AuditEntry.objects.filter(action="revoke share link", user=alice).count() == 3
    # Revoking again finds nothing left to revoke and logs nothing more.
    client.force_login(alice)
    client.post(reverse("admin:collector_sharelink_revoke_all"))
    assert AuditEntry.objects.filter(action="revoke share link").count() == 3


@pytest.mark.usefixtures("traces")
def test_operators_cannot_revoke_links_in_the_admin(operator_client):
    make_share_link(operator_client, T1)
    assert operator_client.post(reverse("admin:collector_sharelink_revoke_all")).status_code == 302  # to admin login
    assert ShareLink.objects.get().revoked is None


@pytest.mark.usefixtures("traces")
def test_a_signed_token_that_names_no_issued_link_is_refused(operator_client, client):
    """A token signed with the key but never issued (no ShareLink row) opens nothing."""
    from django.core import signing

    from dashboard.traces.views import SHARE_SALT

    forged = signing.dumps({"t": T1, "e": 2**40}, salt=SHARE_SALT, compress=True)
    assert client.get(reverse("trace_share", args=[forged])).status_code == 403


def test_a_shared_trace_gone_by_retention_answers_410_with_the_date(operator_client, transactional_db, client):
    old = span(T1, "1" * 16)
    old = Span(**{**{f: getattr(old, f) for f in old.__slots__}, "start_us": NOW_US - 10 * 86_400_000_000})
    store([old])
    url = make_share_link(operator_client, T1)
    assert client.get(url).status_code == 200
    assert len(spanstore.prune_spans(days=7)) == 1
    response = client.get(url)
    assert response.status_code == 410
    assert b"removed by retention" in response.content
    body = client.get(url + "json/")
    assert body.status_code == 410 and body.json()["expired"]
