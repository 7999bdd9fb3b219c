"""Changes made in the Django admin reach the audit log with the fields changed, and never
a secret's value. The admin forms are read and posted back as a browser would."""
import json
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User

from collector.models import ApiToken, AuditEntry, Broker, DeadLetterThreshold, DecodingRule, RuntimeSettings
from dashboard.admin_audit import AuditedAdmin


class _FormReader(HTMLParser):
    """The values a browser would submit from the page's main form."""

    def __init__(self):
        super().__init__()
        self.data, self.select, self.textarea = {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            default = "on" if attrs.get("type") in ("checkbox", "radio") else ""
            self.data.setdefault(name, []).append(attrs.get("value", default))
        elif tag == "select" and name:
            self.select = name
            self.data.setdefault(name, [])
        elif tag == "option" and self.select and "selected" in attrs:
            self.data[self.select].append(attrs.get("value", ""))
        elif tag == "textarea" and name:
            self.textarea = name
            self.data[name] = [""]

    def handle_data(self, data):
        if self.textarea:
            self.data[self.textarea][0] += data.lstrip("\n") if not self.data[self.textarea][0] else data

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def admin_form(client, url):
    reader = _FormReader()
    response = client.get(url)
    assert response.status_code == 200, url
    reader.feed(response.content.decode())
    return {name: values if len(values) != 1 else values[0] for name, values in reader.data.items()}


def submit(client, form_url, **changes):
    data = admin_form(client, form_url)
    data.update(changes)
    data["_save"] = "Save"
    response = client.post(form_url, data)
    errors = response.context and response.context.get("errors")
    assert response.status_code == 302, f"{errors!r} {data!r}"
    return response


def logged(action="admin"):
    return list(AuditEntry.objects.filter(action__startswith=action).order_by("id"))


def test_every_model_the_admin_shows_is_audited(db):
    """Ours in collector/admin.py, auth's User and Group, any other app's: one mechanism."""
    registry = admin.site._registry
    assert User in registry and Group in registry and Broker in registry and RuntimeSettings in registry
    unaudited = [model._meta.label for model, model_admin in registry.items() if not isinstance(model_admin, AuditedAdmin)]
    assert unaudited == []


def test_a_settings_change_in_the_admin_reaches_the_audit_page_with_the_field_changed(admin_client_, alice):
    settings_ = RuntimeSettings.load()
    submit(admin_client_, f"/admin/collector/runtimesettings/{settings_.pk}/change/", read_only="on",
           event_retention_days="3")
    [entry] = logged()
    assert (entry.user, entry.action) == (alice, "admin change")
    assert entry.detail["changes"] == {"read_only": {"from": False, "to": True},
                                       "event_retention_days": {"from": 7, "to": 3}}
    page = admin_client_.get("/audit/").content.decode()
    assert "read_only: False → True" in page and "event_retention_days: 7 → 3" in page


def test_a_broker_url_change_is_logged_with_its_passwords_redacted(admin_client_):
    broker = Broker.objects.create(name="prod", url="nats://app:old-secret@nats-a.example:4222")
    submit(admin_client_, f"/admin/collector/broker/{broker.pk}/change/",
           url="nats://app:new-secret@nats-b.example:4222")
    [entry] = logged()
    text = json.dumps(entry.detail)
    assert "nats-b.example" in text and "***" in text
    assert "old-secret" not in text and "new-secret" not in text


def test_a_user_made_and_given_a_password_in_the_admin_is_logged_without_the_password(admin_client_):
    submit(admin_client_, "/admin/auth/user/add/", username="erin", password1="Erin-s3cret-pass",
           password2="Erin-s3cret-pass", usable_password="true")
    erin = User.objects.get(username="erin")
    submit(admin_client_, f"/admin/auth/user/{erin.pk}/password/", password1="An0ther-s3cret",
           password2="An0ther-s3cret")
    added, changed = logged()
    assert added.action == "admin add" and added.detail["changes"]["username"] == {"from": None, "to": "erin"}
    assert added.detail["changes"]["password"] == "(set)"
    assert changed.action == "admin change" and changed.detail["changes"] == {"password": "(changed)"}
    erin.refresh_from_db()
    for entry in (added, changed):
        text = json.dumps(entry.detail) + entry.result + entry.target
        assert "s3cret" not in text and erin.password not in text and "pbkdf2" not in text


def test_granting_a_role_in_the_admin_is_logged_with_the_group_added(admin_client_, dave):
    viewer = Group.objects.get(name="viewer")
    submit(admin_client_, f"/admin/auth/user/{dave.pk}/change/", groups=[str(viewer.pk)])
    [entry] = logged()
    assert entry.target.startswith(f"auth.user {dave.pk}")
    assert entry.detail["changes"] == {"groups": {"added": ["viewer"], "removed": []}}
    assert "groups: +viewer" in admin_client_.get("/audit/").content.decode()


def test_a_role_s_permissions_changed_in_the_admin_are_logged(admin_client_):
    viewer = Group.objects.get(name="viewer")
    form = admin_form(admin_client_, f"/admin/auth/group/{viewer.pk}/change/")
    kept = form["permissions"][1:]
    submit(admin_client_, f"/admin/auth/group/{viewer.pk}/change/", permissions=kept)
    [entry] = logged()
    assert len(entry.detail["changes"]["permissions"]["removed"]) == 1


def test_an_api_token_made_in_the_admin_is_logged_without_the_token(admin_client_, charlie):
    response = submit(admin_client_, "/admin/collector/apitoken/add/", user=str(charlie.pk), name="grafana")
    shown = [str(m) for m in response.wsgi_request._messages]
    secret = next(word for m in shown for word in m.split() if word.startswith("es_"))
    token = ApiToken.objects.get()
    [entry] = logged()
    text = json.dumps(entry.detail) + entry.target + entry.result
    assert "grafana" in text
    # The prefix names the token (the admin lists it); the token and its hash never appear.
    assert secret not in text and token.digest not in text and token.prefix in text


def test_a_webhook_url_is_logged_by_its_host_only_and_a_deleted_rule_is_logged(admin_client_):
    threshold = DeadLetterThreshold.objects.create(subject_pattern="orders.>")
    submit(admin_client_, f"/admin/collector/deadletterthreshold/{threshold.pk}/change/",
           webhook="https://hooks.example.com/services/T0/B0/XXSECRETXX")
    rule = DecodingRule.objects.create(field="type", header="X-Type")
    assert admin_client_.post(f"/admin/collector/decodingrule/{rule.pk}/delete/", {"post": "yes"}).status_code == 302
    change, delete = logged()
    assert "XXSECRETXX" not in json.dumps(change.detail)
    assert change.detail["changes"]["webhook"] == {"from": "", "to": "https://hooks.example.com/…"}
    assert delete.action == "admin delete" and delete.detail["changes"]["deleted"]["header"] == "X-Type"
    assert not DecodingRule.objects.exists()


@pytest.mark.parametrize("secret", ["password", "api_token", "client_secret", "digest"])
def test_unit_diff_never_shows_a_secret_field_s_value(secret):
    from dashboard.admin_audit import diff

    changes = diff({secret: "old-value"}, {secret: "new-value"})
    assert changes == {secret: "(changed)"}
