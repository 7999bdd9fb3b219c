"""Login everywhere but /healthz; roles; tokens; security headers."""
import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver

from collector.models import ApiToken

SAMPLES = {"int": "1", "str": "sample", "path": "sample/path", "slug": "sample", "uuid": "0" * 32}
PUBLIC = {"healthz", "accounts/login/"}


def all_paths(patterns=None, prefix=""):
    """Every URL of the project, with sample values for its parameters (the admin's own
    URLs are represented by its index)."""
    patterns = get_resolver().url_patterns if patterns is None else patterns
    for pattern in patterns:
        route = str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route.startswith("admin/"):
                yield prefix + "admin/"
                continue
            yield from all_paths(pattern.url_patterns, prefix + route)
        elif isinstance(pattern, URLPattern):
            for converter, sample in SAMPLES.items():
                route = _fill(route, converter, sample)
            yield prefix + route.lstrip("^").rstrip("$")


def _fill(route, converter, sample):
    import re

    return re.sub(r"<%s:[^>]+>" % converter, sample, re.sub(r"<(?!\w+:)([^>]+)>", sample, route))


@pytest.mark.django_db
def test_every_page_but_the_public_ones_redirects_anonymous_users_to_login(client):
    """Pages answer 302 to /accounts/login/; API URLs answer 401."""
    checked = 0
    for route in set(all_paths()):
        if route in PUBLIC or route.startswith("share/"):
            continue
        response = client.get("/" + route)
        if route.startswith(("api/", "jaeger/")):
            assert response.status_code == 401, route
        else:
            assert response.status_code == 302, route
            assert response["Location"].startswith("/accounts/login/"), route
        checked += 1
    assert checked >= 3


@pytest.mark.django_db
def test_healthz_needs_no_login_and_reports_each_dependency(client):
    """/healthz answers JSON up/down for database, broker, Redis and collector; no collector yet means 503."""
    response = client.get("/healthz")
    body = response.json()
    assert body["database"] == "up"
    assert body["broker"] == "up"
    assert body["redis"] == "up"
    assert body["collector"] == "down"
    assert response.status_code == 503


@pytest.mark.django_db
def test_healthz_is_200_when_the_collector_beats(client):
    from django.utils import timezone

    from collector.models import CollectorHeartbeat

    CollectorHeartbeat.objects.create(name="c1", started=timezone.now(), beat=timezone.now())
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert set(response.json().values()) == {"up"}


def _refused_redis_url():
    """A Redis URL with a password, on a port where nothing listens."""
    from runner.servers import free_port

    return f"redis://:hunter2-s3cret@127.0.0.1:{free_port(26379)}/0"


@pytest.mark.django_db
def test_healthz_tells_anonymous_callers_only_which_component_is_up_or_down(client, settings):
    """A load balancer learns the component names and up/down, nothing of why: no exception
    text (it names hosts, users, paths)."""
    settings.REDIS_URL = _refused_redis_url()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "up", "broker": "up", "redis": "down", "collector": "down"}


@pytest.mark.django_db
def test_healthz_tells_admins_why_a_component_is_down_without_its_password(client, alice, charlie, settings):
    """Logged-in admins also get `<component>_error` with the reason; a viewer does not."""
    settings.REDIS_URL = _refused_redis_url()
    client.force_login(charlie)
    assert set(client.get("/healthz").json()) == {"database", "broker", "redis", "collector"}
    client.force_login(alice)
    body = client.get("/healthz").json()
    assert body["redis"] == "down" and body["redis_error"]
    assert body["collector_error"] == "no heartbeat yet"
    assert "hunter2" not in json.dumps(body)


def test_a_viewer_cannot_reach_the_admin(viewer_client):
    response = viewer_client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_an_operator_cannot_reach_the_admin_even_when_marked_staff(operator_client, bob):
    bob.is_staff = True
    bob.save()
    assert operator_client.get("/admin/").status_code == 302


def test_an_admin_reaches_the_admin(admin_client_):
    response = admin_client_.get("/admin/")
    assert response.status_code == 200
    assert b"Broker" in response.content


def test_the_roles_exist_with_their_permissions(db):
    from django.contrib.auth.models import Group

    viewer = set(Group.objects.get(name="viewer").permissions.values_list("codename", flat=True))
    operator = set(Group.objects.get(name="operator").permissions.values_list("codename", flat=True))
    assert "view_topic" in viewer and "publish_message" not in viewer
    assert "publish_message" in operator and viewer <= operator
    assert Group.objects.get(name="admin").permissions.count() > len(operator)


def test_a_bearer_token_logs_a_script_in(client, charlie):
    token = ApiToken(user=charlie, name="script")
    secret = token.issue()
    token.save()
    response = client.get("/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used is not None


def test_a_wrong_bearer_token_is_refused_with_401(client, db):
    response = client.get("/", HTTP_AUTHORIZATION="Bearer es_not-a-token")
    assert response.status_code == 401
    assert "invalid" in response.json()["error"]


def test_only_the_hash_of_a_token_is_stored(charlie):
    token = ApiToken(user=charlie, name="script")
    secret = token.issue()
    token.save()
    stored = ApiToken.objects.get(pk=token.pk)
    assert secret not in (stored.digest, stored.prefix)
    assert ApiToken.user_for(secret).user == charlie


def test_pages_forbid_inline_script(viewer_client):
    response = viewer_client.get("/")
    csp = response["Content-Security-Policy"]
    script = [part for part in csp.split(";") if part.strip().startswith("script-src")][0]
    assert "'self'" in script and "unsafe-inline" not in script
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_post_without_its_csrf_token_is_refused(charlie):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(charlie)
    assert strict.post("/accounts/logout/").status_code == 403


def test_a_bad_time_window_is_a_400_with_the_reason(viewer_client):
    response = viewer_client.get("/?last=banana")
    assert response.status_code == 400
    assert b"last='banana'" in response.content


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_websocket_is_closed_with_4401():
    from dashboard.asgi import application

    async def connect():
        communicator = WebsocketCommunicator(application, "/ws/events/", headers=[(b"origin", b"http://localhost")])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(connect)()
    assert connected is False
    assert code == 4401


def test_broker_passwords_are_never_shown_back_in_the_admin(admin_client_):
    from collector.models import Broker

    mine = Broker.objects.create(name="prod", url="nats://app:s3cret-pass@nats.example:4222")
    env = Broker.objects.create(name="env", url="nats://ops:env-secret@nats.example:4222", from_env=True)
    for broker in (mine, env):
        html = admin_client_.get(f"/admin/collector/broker/{broker.pk}/change/").content.decode()
        assert "s3cret-pass" not in html and "env-secret" not in html
    assert "s3cret-pass" not in admin_client_.get("/admin/collector/broker/").content.decode()
    # Saving the masked URL back keeps the real password.
    response = admin_client_.post(f"/admin/collector/broker/{mine.pk}/change/", {
        "name": "prod", "kind": "nats", "url": mine.display_url, "enabled": "on"})
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.url == "nats://app:s3cret-pass@nats.example:4222"


def test_only_admins_see_the_admin_link(admin_client_, client, charlie):
    assert b'href="/admin/"' in admin_client_.get("/").content
    client.force_login(charlie)
    assert b'href="/admin/"' not in client.get("/").content


def test_a_user_in_no_role_group_gets_403_on_every_page_saying_an_admin_must_grant_a_role(client, dave):
    """Logged in is not enough: every page answers 403 with the "ask an admin" page,
    every API URL a 403 JSON error; logging out still works."""
    client.force_login(dave)
    checked = 0
    for route in set(all_paths()):
        if route in PUBLIC or route.startswith("share/") or route == "accounts/logout/":
            continue
        response = client.get("/" + route)
        assert response.status_code == 403, route
        if route.startswith(("api/", "jaeger/")):
            assert "ask an admin" in response.json()["error"], route
        else:
            assert b"ask an admin" in response.content, route
        checked += 1
    assert checked >= 20
    assert client.post("/accounts/logout/").status_code == 302


def test_a_user_in_no_role_group_is_refused_on_the_api_and_jaeger_api_with_a_bearer_token(client, dave):
    token = ApiToken(user=dave, name="script")
    secret = token.issue()
    token.save()
    for url in ("/api/events", "/api/topics", "/jaeger/api/services", "/jaeger/api/traces?service=x"):
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert response.status_code == 403, url
        assert "ask an admin" in response.json()["error"]


def test_a_user_in_any_role_group_reads_the_pages(client, charlie, bob, alice):
    for user in (charlie, bob, alice):
        client.force_login(user)
        assert client.get("/").status_code == 200
        assert client.get("/api/events").status_code == 200


def _websocket_as(client, user):
    from dashboard.asgi import application

    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def connect():
        communicator = WebsocketCommunicator(application, "/ws/events/",
                                             headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(connect)()


@pytest.mark.django_db(transaction=True)
def test_the_live_websocket_refuses_a_user_in_no_role_group_with_4403_and_accepts_a_viewer(client):
    from tests.conftest import _user

    assert _websocket_as(client, _user("dave", None)) == (False, 4403)
    connected, _ = _websocket_as(client, _user("charlie", "viewer"))
    assert connected is True
