"""Who may see versions: login required, a role required (pages and API alike)."""
import pytest

pytestmark = pytest.mark.django_db


def test_it_redirects_anonymous_pages_to_login_and_refuses_anonymous_api_calls(client):
    assert client.get("/versions/").status_code == 302
    assert client.get("/api/versions").status_code in (401, 403)


def test_a_user_without_a_role_sees_no_versions(client, dave):
    client.force_login(dave)
    for url in ("/versions/", "/versions/order.created/", "/api/versions", "/api/versions/order.created",
                "/api/versions/order.created/schema?version=1"):
        assert client.get(url).status_code == 403, url


def test_a_viewer_gets_404_for_a_type_never_seen_and_400_for_a_bad_window(viewer_client):
    assert viewer_client.get("/versions/never.seen/").status_code == 404
    assert viewer_client.get("/api/versions/never.seen").status_code == 404
    assert viewer_client.get("/api/versions/never.seen/schema", {"version": "1"}).status_code == 404
    assert viewer_client.get("/api/versions/never.seen/schema").status_code == 400
    assert viewer_client.get("/versions/", {"last": "forever"}).status_code == 400
    assert viewer_client.get("/versions/", {"last": "1h"}).status_code == 200
