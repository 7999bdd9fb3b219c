"""Operators publish a message from the topic page, through a Celery task (a real worker
on the real Redis). Each rendered form publishes at most once; Nats-Msg-Id and
Eventscope-* headers are Eventscope's alone."""
import html
import re
import uuid

import nats
import pytest
from django.utils import timezone

from collector.models import AuditEntry, Broker, Topic
from tests.conftest import nats_publish, run_async

pytestmark = pytest.mark.django_db(transaction=True)


def stream_messages(url, stream):
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        messages = [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        await nc.close()
        return messages

    return run_async(go())


def publish_form(client, subject):
    """The publish form's fields as the topic page renders them (one-time token included)."""
    page = client.get(f"/topics/{subject}/").content.decode()
    form = page.split('id="publish"', 1)[1].split("</form>", 1)[0]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    for name in ("headers", "payload"):
        fields[name] = html.unescape(re.search(rf'name="{name}"[^>]*>(.*?)</textarea>', form, re.S).group(1))
    return fields


@pytest.fixture
def topic(nats_url, db):
    stream = "PUB" + uuid.uuid4().hex[:6].upper()
    subject = f"{stream.lower()}.note"
    nats_publish(nats_url, [(subject, b'{"first": true}', {"X-Reason": "first", "Nats-Msg-Id": "their-own-1",
                                                           "Eventscope-Retry-Of": "12"})],
                 stream=stream, subjects=[f"{stream.lower()}.>"])
    broker = Broker.objects.create(name="nats", url=nats_url)
    Topic.objects.create(broker=broker, name=subject, stream=stream, first_seen=timezone.now(), last_seen=timezone.now())
    return stream, subject


def test_an_operator_publishes_once_even_when_the_same_rendered_form_is_sent_twice(operator_client,
                                                                                   celery_worker_thread, nats_url,
                                                                                   topic):
    stream, subject = topic
    form = publish_form(operator_client, subject)
    form.update(headers="X-Reason: manual test", payload='{"second": true}')
    assert operator_client.post(f"/topics/{subject}/publish/", form).status_code == 302
    again = operator_client.post(f"/topics/{subject}/publish/", form, follow=True).content.decode()
    messages = stream_messages(nats_url, stream)
    assert [m.data for m in messages] == [b'{"first": true}', b'{"second": true}']
    assert "Already sent: this form was submitted at" in again and "Nothing was sent again" in again
    assert messages[1].headers["X-Reason"] == "manual test"
    assert messages[1].headers["Eventscope-Published-By"] == "bob"
    assert messages[1].headers["Nats-Msg-Id"].startswith("eventscope-publish-")
    results = list(AuditEntry.objects.filter(action="publish").order_by("id").values_list("result", flat=True))
    assert results[0].startswith(f"stored in stream {stream} at sequence 2")
    assert results[1] == "refused: this form was already submitted"
    # A freshly rendered form is a new message.
    operator_client.post(f"/topics/{subject}/publish/", publish_form(operator_client, subject))
    assert len(stream_messages(nats_url, stream)) == 3


@pytest.mark.parametrize("typed", ["Nats-Msg-Id: fixed-id-1", "Eventscope-Published-By: mallory",
                                   "eventscope-retry-of: 7"])
def test_typed_dedup_or_eventscope_headers_are_refused_with_the_reason(operator_client, nats_url, topic, typed):
    stream, subject = topic
    form = publish_form(operator_client, subject)
    form["headers"] = typed
    response = operator_client.post(f"/topics/{subject}/publish/", form, follow=True).content.decode()
    name = typed.split(":")[0]
    assert f"Not published: header line 1: {name} is set by Eventscope only" in response
    assert not AuditEntry.objects.exists()
    assert len(stream_messages(nats_url, stream)) == 1


def test_a_form_without_its_token_or_made_for_another_topic_is_refused(operator_client, nats_url, topic, broker_topic):
    stream, subject = topic
    form = publish_form(operator_client, subject)
    missing = operator_client.post(f"/topics/{subject}/publish/", {**form, "token": ""}, follow=True)
    assert b"Not published: the form carried no one-time token" in missing.content
    elsewhere = operator_client.post(f"/topics/{broker_topic}/publish/", form, follow=True)
    assert b"Not published: the form was made for another user or subject" in elsewhere.content
    forged = operator_client.post(f"/topics/{subject}/publish/", {**form, "token": form["token"] + "x"}, follow=True)
    assert b"Not published: the form&#x27;s one-time token is not valid" in forged.content
    assert not AuditEntry.objects.exists() and len(stream_messages(nats_url, stream)) == 1


@pytest.fixture
def broker_topic(topic):
    other = topic[1] + ".other"
    Topic.objects.create(broker=Broker.objects.get(), name=other, first_seen=timezone.now(), last_seen=timezone.now())
    return other


def test_bad_header_lines_are_refused_with_the_reason(operator_client, db):
    broker = Broker.objects.create(name="nats", url="nats://127.0.0.1:4222")
    Topic.objects.create(broker=broker, name="x.y", first_seen=timezone.now(), last_seen=timezone.now())
    response = operator_client.post("/topics/x.y/publish/", {"headers": "no colon here", "payload": "{}"}, follow=True)
    assert b"header line 1 must look like" in response.content
    assert not AuditEntry.objects.exists()
