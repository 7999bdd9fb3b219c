"""Celery tasks of the events pages: publishing a message for an operator. Tasks are the
only way the web side talks to a broker."""
import asyncio
import base64

from dashboard.celery import app

# Bound to the project's Celery app (not shared_task): the web process never imports the
# worker's app module otherwise, and a shared task would fall back to Celery's default broker.


@app.task(name="eventscope.publish_message")
def publish_message(audit_id, subject, headers, payload_b64, msg_id=None):
    """Publish one message for an operator and record the outcome in the audit entry.
    On a JetStream subject the `Nats-Msg-Id` derives from the form's one-time token, so a
    task run twice (a redelivered task, a resubmitted form) stores one message. Nats-Msg-Id
    and Eventscope-* headers are Eventscope's alone: any others given are dropped."""
    from collector.brokers.nats import publish
    from collector.models import AuditEntry, Broker
    from dashboard.events.topics import reserved_header

    entry = AuditEntry.objects.get(pk=audit_id)
    broker = Broker.objects.get(name=entry.detail.get("broker", "nats"))
    headers = {name: value for name, value in (headers or {}).items() if not reserved_header(name)}
    headers["Nats-Msg-Id"] = msg_id or f"eventscope-publish-{audit_id}"
    headers["Eventscope-Published-By"] = entry.user.get_username() if entry.user else ""
    try:
        result = asyncio.run(publish(broker.url, subject, headers, base64.b64decode(payload_b64)))
    except Exception as error:  # the outcome, whatever it is, goes to the audit log
        entry.result = f"failed: {error}"[:500]
        entry.save(update_fields=["result"])
        raise
    entry.result = result
    entry.save(update_fields=["result"])
    return result

