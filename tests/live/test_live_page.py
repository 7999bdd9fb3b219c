"""The /live/ page as served: filters from the URL (shareable), a 400 with the reason for
a bad one, the Live link lit in the navigation, the rate cap from the admin setting."""
import pytest

from collector.models import RuntimeSettings

pytestmark = pytest.mark.django_db


def test_the_live_page_carries_the_filters_of_its_url_and_the_admin_s_rate_cap(viewer_client):
    RuntimeSettings.objects.update_or_create(pk=1, defaults={"live_rate_cap": 75})
    response = viewer_client.get("/live/?subject=orders.*&service=shop&type=order.created&version=2&q=A-42&rows=500")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-max-rows="500"' in html and "At most 75 events a second" in html
    assert '"subject": "orders.*"' in html and '"service": "shop"' in html and '"text": "A\\u002D42"' in html
    assert 'name="subject" value="orders.*"' in html


@pytest.mark.parametrize("query, reason", [
    ("subject=orders.>.eu", "subject &#x27;orders.&gt;.eu&#x27;: &gt; must be the last token"),
    ("subject=ord*", "a wildcard must be a whole token"),
    ("rows=7", "rows=&#x27;7&#x27;: one of 100, 500, 1000, 2000, 5000"),
])
def test_a_bad_filter_is_a_400_with_the_reason(viewer_client, query, reason):
    response = viewer_client.get(f"/live/?{query}")
    assert response.status_code == 400
    assert reason in response.content.decode()


def test_the_live_link_is_lit_in_the_navigation(viewer_client):
    html = viewer_client.get("/").content.decode()
    assert '<a href="/live/' in html and 'title="Not available in this version yet">Live<' not in html
    assert 'class="active" aria-current="page">Live</a>' in viewer_client.get("/live/").content.decode()


def test_the_live_page_needs_a_login(client):
    response = client.get("/live/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
