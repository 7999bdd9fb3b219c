import base64
import secrets
from datetime import timedelta

from django.contrib import messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from collector.events import readers
from collector.models import AuditEntry, PublishToken, RuntimeSettings
from collector.roles import has_role
from dashboard.presenters import page_links, raw_text, sparkline_points

FILTERS = ("type", "version", "producer", "key", "trace", "header", "path", "equals", "contains")
# Headers Eventscope alone sets on what it publishes or retries: the dedup key (derived
# from the form or the retry, so a second submission stores nothing) and its provenance.
RESERVED_HEADERS = ("nats-msg-id", "eventscope-")
PUBLISH_FORM_MAX_AGE = timedelta(days=1)
PUBLISH_FORM_SALT = "eventscope.publish-form"


def topic_list(request):
    sort = request.GET.get("sort", "count")
    query = request.GET.get("q", "").strip()
    rows, more = readers.topics(request.window, sort=sort, query=query, broker=request.GET.get("broker"),
                                after=request.GET.get("after"))
    for row in rows:
        row["spark_points"] = sparkline_points(row["spark"])
    next_query = None
    if more and sort == "name":
        next_query = _query(request, after=rows[-1]["name"])
    return render(request, "events/topics.html", {"topics": rows, "more": more, "sort": sort, "query": query,
                                           "stream_notes": readers.stream_notes(),
                                           "exchange_coverage": readers.exchange_coverage(),
                                           "next_query": next_query, "sorts": list(readers.TOPIC_SORTS)})


def _query(request, **changes):
    params = request.GET.copy()
    for key in ("before", "after"):
        params.pop(key, None)
    for key, value in changes.items():
        params[key] = value
    return params.urlencode()


def topic_detail(request, name):
    topic = readers.topic(name, request.GET.get("broker"))
    if topic is None:
        raise Http404(f"No topic {name!r} has been seen")
    filters = {key: request.GET.get(key, "").strip() for key in FILTERS if request.GET.get(key, "").strip()}
    try:
        rows, more = readers.events(request.window, subject=name, filters=filters,
                                    before=request.GET.get("before"), after=request.GET.get("after"))
    except readers.BadFilter as error:
        return render(request, "events/topic.html", {"topic": topic, "error": str(error), "filters": filters,
                                              "events": [], "facets": {}}, status=400)
    older, newer = page_links(request, rows, more)
    can_publish = has_role(request.user, "operator", "admin") and not RuntimeSettings.load().read_only
    template_headers = template_text = ""
    if can_publish:
        last = readers.events(_all_time(), subject=name, limit=1)[0]
        if last:
            last = readers.event(last[0].id)
            template_text = raw_text(last.raw) or ""
            template_headers = "\n".join(f"{k}: {v}" for k, v in (last.headers or {}).items()
                                         if not reserved_header(k))
    return render(request, "events/topic.html", {
        "topic": topic, "events": rows, "filters": filters, "older": older, "newer": newer,
        "facets": readers.topic_facets(name, request.window),
        "can_publish": can_publish, "template_text": template_text, "template_headers": template_headers,
        "publish_token": publish_token(request.user, name) if can_publish else "",
    })


def _all_time():
    from datetime import datetime, timezone

    from dashboard.timewindow import Window

    return Window(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc), None)


def reserved_header(name):
    return name.strip().lower().startswith(RESERVED_HEADERS)


def parse_headers(text):
    """`Name: value` lines a user typed into a dict; a line without a colon is an error, and
    so is a header only Eventscope sets (Nats-Msg-Id, Eventscope-*)."""
    headers = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header line {number} must look like 'Name: value'")
        if reserved_header(name):
            raise ValueError(f"header line {number}: {name.strip()} is set by Eventscope only (it deduplicates and "
                             "records who sent what); remove it")
        headers[name.strip()] = value.strip()
    return headers


def publish_token(user, subject):
    """The one-time token of a rendered publish form, signed for this user and subject.
    The message's Nats-Msg-Id derives from its nonce."""
    return signing.dumps({"n": secrets.token_hex(12), "u": user.pk, "s": subject}, salt=PUBLISH_FORM_SALT)


def read_publish_token(token, user, subject):
    """The nonce of a publish form's token, or ValueError saying why it is refused."""
    if not token:
        raise ValueError("the form carried no one-time token; reload the page and publish from it")
    try:
        found = signing.loads(token, salt=PUBLISH_FORM_SALT, max_age=PUBLISH_FORM_MAX_AGE)
    except signing.SignatureExpired:
        raise ValueError("the form is more than a day old; reload the page and publish again") from None
    except signing.BadSignature:
        raise ValueError("the form's one-time token is not valid; reload the page and publish from it") from None
    if found.get("u") != user.pk or found.get("s") != subject:
        raise ValueError("the form was made for another user or subject; reload the page and publish from it")
    return found["n"]


@require_POST
def publish(request, name):
    """An operator publishes a message to a subject (through a Celery task)."""
    if not has_role(request.user, "operator", "admin"):
        raise PermissionDenied("Only operators publish messages")
    if RuntimeSettings.load().read_only:
        raise PermissionDenied("Eventscope is in read-only mode")
    if readers.topic(name, request.POST.get("broker")) is None:
        raise Http404(f"No topic {name!r} has been seen")
    back = reverse("topic", args=[name])
    try:
        headers = parse_headers(request.POST.get("headers", ""))
        nonce = read_publish_token(request.POST.get("token", ""), request.user, name)
    except ValueError as error:
        messages.error(request, f"Not published: {error}")
        return redirect(back)
    payload = request.POST.get("payload", "").encode()
    broker = request.POST.get("broker") or "nats"
    msg_id = f"eventscope-publish-{nonce}"
    try:
        with transaction.atomic():
            token = PublishToken.objects.create(nonce=nonce, subject=name)
    except IntegrityError:  # this very form was submitted before
        return _already_sent(request, name, nonce, back)
    PublishToken.objects.filter(created__lt=timezone.now() - 2 * PUBLISH_FORM_MAX_AGE).delete()
    entry = AuditEntry.objects.create(user=request.user, action="publish", target=name,
                                      detail={"broker": broker, "headers": headers, "size": len(payload),
                                              "msg_id": msg_id})
    PublishToken.objects.filter(pk=token.pk).update(audit=entry)
    from dashboard.events.tasks import publish_message

    try:
        result = publish_message.delay(entry.id, name, headers, base64.b64encode(payload).decode(), msg_id)
    except Exception as error:  # the task never reached the queue: the same form may be sent again
        PublishToken.objects.filter(pk=token.pk).delete()
        problem = f"the task queue is unreachable ({error or type(error).__name__}); nothing was sent"
        AuditEntry.objects.filter(pk=entry.pk).update(result=f"failed: {problem}"[:500])
        messages.error(request, f"Not published to {name}: {problem}")
        return redirect(back)
    try:
        outcome = result.get(timeout=15)
        messages.success(request, f"Published to {name}: {outcome}")
    except Exception as error:  # shown to the operator and kept in the audit log
        messages.error(request, f"Not published to {name}: {error}")
    return redirect(back + "?" + urlencode({"last": request.window.last or "15m"}))


def _already_sent(request, name, nonce, back):
    earlier = PublishToken.objects.select_related("audit").get(nonce=nonce)
    AuditEntry.objects.create(user=request.user, action="publish", target=name,
                              detail={"msg_id": f"eventscope-publish-{nonce}"},
                              result="refused: this form was already submitted")
    outcome = f" ({earlier.audit.result})" if earlier.audit and earlier.audit.result else ""
    messages.warning(request, f"Already sent: this form was submitted at {earlier.created:%Y-%m-%d %H:%M:%S} UTC"
                              f"{outcome}. Nothing was sent again.")
    return redirect(back)
