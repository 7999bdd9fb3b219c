"""Operators publish a message from the topic page, through a Celery task."""
import uuid

import nats
import pytest

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


def test_an_operator_publishes_once_even_when_the_form_is_sent_twice(operator_client, celery_worker_thread, nats_url,
                                                                     settings):
    stream = "PUB" + uuid.uuid4().hex[:6].upper()
    subject = f"{stream.lower()}.note"
    nats_publish(nats_url, [(subject, b'{"first": true}', None)], stream=stream, subjects=[f"{stream.lower()}.>"])
    broker = Broker.objects.create(name="nats", url=nats_url)
    from django.utils import timezone

    Topic.objects.create(broker=broker, name=subject, stream=stream, first_seen=timezone.now(), last_seen=timezone.now())
    response = operator_client.post(f"/topics/{subject}/publish/", {
        "broker": "nats", "headers": "X-Reason: manual test\nNats-Msg-Id: fixed-id-1", "payload": '{"second": true}'})
    assert response.status_code == 302
    again = operator_client.post(f"/topics/{subject}/publish/", {
        "broker": "nats", "headers": "X-Reason: manual test\nNats-Msg-Id: fixed-id-1", "payload": '{"second": true}'})
    assert again.status_code == 302
    messages = stream_messages(nats_url, stream)
    assert [m.data for m in messages] == [b'{"first": true}', b'{"second": true}']
    assert messages[1].headers["X-Reason"] == "manual test"
    assert messages[1].headers["Eventscope-Published-By"] == "bob"
    results = list(AuditEntry.objects.filter(action="publish").order_by("id").values_list("result", flat=True))
    assert results[0].startswith(f"stored in stream {stream} at sequence 2")
    assert "duplicate suppressed" in results[1]


def test_bad_header_lines_are_refused_with_the_reason(operator_client, db):
    from django.utils import timezone

    broker = Broker.objects.create(name="nats", url="nats://127.0.0.1:4222")
    Topic.objects.create(broker=broker, name="x.y", first_seen=timezone.now(), last_seen=timezone.now())
    response = operator_client.post("/topics/x.y/publish/", {"headers": "no colon here", "payload": "{}"}, follow=True)
    assert b"header line 1 must look like" in response.content
    assert not AuditEntry.objects.exists()
