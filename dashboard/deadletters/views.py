"""Dead letters: browse them, retry (one, a selection, everything matching a filter),
discard or resolve them; and the audit log of every such action.

The web side never talks to a broker: a retry is claimed here (see `dashboard.deadletters.tasks`)
and sent by a Celery task."""
from datetime import datetime

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from collector.deadletters import readers as dlq_readers
from collector.keyset import BadFilter
from collector.live import summaries as live_summaries
from collector.models import AuditEntry, DeadLetter, RetryJob, RuntimeSettings
from collector.roles import has_role
from dashboard.deadletters import tasks as tasks_dlq
from dashboard.events.topics import parse_headers
from dashboard.presenters import hexdump, pretty_payload, raw_text, sparkline_points

PERMISSION = "collector.retry_deadletter"


def may_act(user):
    """Operators and admins may retry, discard and resolve, unless Eventscope is read-only."""
    return user.has_perm(PERMISSION) and not RuntimeSettings.load().read_only


def _require_act(request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("Only operators retry, discard or resolve dead letters")
    if RuntimeSettings.load().read_only:
        raise PermissionDenied("Eventscope is in read-only mode")


def _audit(request, action, target, detail=None, result=""):
    return AuditEntry.objects.create(user=request.user, action=action, target=target, detail=detail or {},
                                     result=result)


# --- pages ------------------------------------------------------------------------------


def dlq_list(request):
    try:
        filters = dlq_readers.parse_filters(request.GET)
        rows, more = dlq_readers.dead_letters(request.window, filters, before=request.GET.get("before"))
    except BadFilter as error:
        return render(request, "deadletters/dlq.html", {"error": str(error), "filters": {}, "letters": [], "summary": None},
                      status=400)
    summary = dlq_readers.summary(request.window, filters)
    for group in ("topic", "consumer", "reason"):
        for entry in summary[group]:
            entry["spark_points"] = sparkline_points(entry["spark"])
    older = None
    if more:
        params = request.GET.copy()
        params["before"] = dlq_readers.encode_cursor(rows[-1])
        older = params.urlencode()
    newest = None
    if request.GET.get("before"):
        params = request.GET.copy()
        params.pop("before")
        newest = params.urlencode()
    return render(request, "deadletters/dlq.html", {
        "new_count": live_summaries.new_dead_letters(), "latest_death": live_summaries.latest_death(),
        "letters": rows, "more": more, "older": older, "newest": newest, "filters": filters, "summary": summary,
        "reasons": DeadLetter.Reason.choices, "statuses": DeadLetter.Status.choices, "can_act": may_act(request.user),
        "window_query": request.window.absolute_query(),
    })


def dead_letter_detail(request, ident):
    letter = dlq_readers.dead_letter(ident)
    if letter is None:
        raise Http404(f"No dead letter {ident}")
    history = dlq_readers.retry_history(letter)
    can_act = may_act(request.user)
    following = letter.status == DeadLetter.Status.RETRYING or any(
        a.followup == "pending" and a.outcome in ("queued", "sending", "sent", "duplicate") for a in history[:1])
    raw = bytes(letter.raw) if letter.raw is not None else None
    return render(request, "deadletters/dlq_detail.html", {
        "letter": letter, "history": history, "died_again": dlq_readers.died_again(letter),
        "headers": sorted((letter.headers or {}).items()), "text": raw_text(raw) if raw is not None else None,
        "pretty": _pretty(raw), "hex": hexdump(raw) if raw is not None else "",
        "trace_url": _trace_url(letter.trace_id), "can_act": can_act,
        "can_edit": can_act and has_role(request.user, "admin"), "following": following,
        "edit_headers": "\n".join(f"{k}: {v}" for k, v in (letter.headers or {}).items()
                                  if not k.lower().startswith(tasks_dlq.DROPPED_HEADERS)),
    })


def _pretty(raw):
    import json

    if raw is None:
        return None
    try:
        return pretty_payload(json.loads(raw))
    except ValueError:
        return None


def _trace_url(trace_id):
    if not trace_id:
        return None
    try:
        return reverse("trace", args=[trace_id])
    except NoReverseMatch:
        return None


def job_detail(request, ident):
    job = RetryJob.objects.select_related("user").filter(pk=ident).first()
    if job is None:
        raise Http404(f"No retry job {ident}")
    return render(request, "deadletters/dlq_job.html", {"job": job, "running": job.state in ("queued", "running")})


# --- actions (POST only; CSRF is checked by the middleware) -------------------------------


@require_POST
def retry(request, ident):
    """Claim the next attempt of one dead letter and enqueue its republish. The form's
    `attempt` is the attempt the page showed: a second click finds it changed."""
    _require_act(request)
    back = redirect("dead_letter", ident)
    letter = dlq_readers.dead_letter(ident)
    if letter is None:
        raise Http404(f"No dead letter {ident}")
    try:
        seen = int(request.POST.get("attempt", ""))
    except ValueError:
        messages.error(request, "Not retried: the form did not say which attempt it showed")
        return back
    edited_headers = edited_raw = None
    if request.POST.get("edit"):
        if not has_role(request.user, "admin"):
            raise PermissionDenied("Only admins edit a dead letter before retrying it")
        try:
            edited_headers = parse_headers(request.POST.get("headers", ""))
        except ValueError as error:
            messages.error(request, f"Not retried: {error}")
            return back
        edited_raw = request.POST.get("payload", "").encode()
    if letter.raw is None:
        _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": seen}, "refused: the message is gone")
        messages.error(request, f"Not retried: {letter.note or 'the message itself was not kept'}")
        return back
    attempt = tasks_dlq.claim(ident, seen, request.user, edited_headers, edited_raw)
    if attempt is None:
        _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": seen}, "refused: already retried or changed")
        messages.warning(request, "Someone else already retried this dead letter (or it changed); nothing was sent again.")
        return back
    entry = _audit(request, "dlq.retry", f"dead letter {ident}",
                   {"attempt": attempt.attempt, "subject": attempt.subject, "msg_id": attempt.msg_id,
                    "edited": edited_raw is not None}, "queued")
    tasks_dlq.retry_dead_letter.delay(attempt.id, entry.id)
    messages.success(request, f"Retry {attempt.attempt} queued: republishing to {attempt.subject}")
    return back


def _close(request, ident, status, action):
    _require_act(request)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, f"Not {status}: say why")
        return redirect("dead_letter", ident)
    changed = DeadLetter.objects.filter(pk=ident, status__in=DeadLetter.RETRYABLE).update(
        status=status, status_reason=reason, updated=timezone.now())
    _audit(request, action, f"dead letter {ident}", {"reason": reason}, status if changed else "refused: not open")
    if changed:
        messages.success(request, f"Dead letter {ident} {status}")
    else:
        messages.warning(request, f"Dead letter {ident} is being retried or is already closed; nothing changed")
    return redirect("dead_letter", ident)


@require_POST
def discard(request, ident):
    return _close(request, ident, DeadLetter.Status.DISCARDED, "dlq.discard")


@require_POST
def resolve(request, ident):
    return _close(request, ident, DeadLetter.Status.RESOLVED, "dlq.resolve")


@require_POST
def bulk_retry(request):
    """Retry the ticked dead letters (`pick` = "id:attempt"), or everything matching the
    filter in the window; with `dry_run` only show what would be sent where."""
    _require_act(request)
    try:
        selection = _selection(request)
    except (BadFilter, ValueError) as error:
        messages.error(request, f"Not retried: {error}")
        return redirect(reverse("dlq") + "?" + request.POST.get("back", ""))
    if selection is None:
        messages.error(request, "Nothing selected")
        return redirect(reverse("dlq") + "?" + request.POST.get("back", ""))
    if request.POST.get("dry_run"):
        return render(request, "deadletters/dlq_dry_run.html", {"plan": dlq_readers.dry_run(selection), "selection": selection,
                                                     "post": request.POST})
    job = RetryJob.objects.create(user=request.user, selection=selection)
    entry = _audit(request, "dlq.bulk_retry", f"retry job {job.id}", selection, "queued")
    job.total = dlq_readers.selection_queryset(selection).count()
    job.save(update_fields=["total"])
    tasks_dlq.run_retry_job.delay(job.id, entry.id)
    return redirect("dlq_job", job.id)


def _selection(request):
    if request.POST.get("scope") == "filter":
        filters = dlq_readers.parse_filters(request.POST)
        start = datetime.fromisoformat(request.POST.get("from") or request.window.start.isoformat())
        end = datetime.fromisoformat(request.POST.get("to") or request.window.end.isoformat())
        return {"filters": filters, "from": start.isoformat(), "to": end.isoformat()}
    picked = {}
    for value in request.POST.getlist("pick"):
        ident, _, attempt = value.partition(":")
        if ident.isdigit() and attempt.isdigit():
            picked[ident] = int(attempt)
    return {"ids": picked} if picked else None


# --- JSON API ---------------------------------------------------------------------------


def _letter_json(letter):
    return {
        "id": letter.id, "url": reverse("dead_letter", args=[letter.id]), "reason": letter.reason,
        "subject": letter.subject, "dlq_subject": letter.dlq_subject or None, "stream": letter.stream or None,
        "consumer": letter.consumer or None, "stream_seq": letter.stream_seq, "error": letter.error,
        "note": letter.note, "deliveries": letter.deliveries, "first_seen": letter.first_seen.isoformat(),
        "status": letter.status, "attempt": letter.attempt, "event_id": letter.event_id,
        "retry_of": letter.retry_of_id,
    }


def api_list(request):
    try:
        filters = dlq_readers.parse_filters(request.GET)
        rows, more = dlq_readers.dead_letters(request.window, filters, before=request.GET.get("before"))
    except BadFilter as error:
        return JsonResponse({"error": str(error)}, status=400)
    next_url = None
    if more:
        params = request.GET.copy()
        params["before"] = dlq_readers.encode_cursor(rows[-1])
        next_url = request.path + "?" + params.urlencode()
    return JsonResponse({"summary": dlq_readers.summary(request.window, filters),
                         "dead_letters": [_letter_json(r) for r in rows], "next": next_url})


def api_detail(request, ident):
    letter = dlq_readers.dead_letter(ident)
    if letter is None:
        return JsonResponse({"error": f"no dead letter {ident}"}, status=404)
    body = _letter_json(letter)
    body["headers"] = letter.headers
    body["retries"] = [{
        "attempt": a.attempt, "user": a.user.get_username() if a.user else None, "msg_id": a.msg_id,
        "outcome": a.outcome, "error": a.error, "stream": a.stream or None, "stream_seq": a.stream_seq,
        "sent_at": a.sent_at.isoformat() if a.sent_at else None, "followup": a.followup,
        "next_dead_letter": a.next_dead_letter_id,
    } for a in dlq_readers.retry_history(letter)]
    return JsonResponse(body)


def api_job(request, ident):
    job = RetryJob.objects.filter(pk=ident).first()
    if job is None:
        return JsonResponse({"error": f"no retry job {ident}"}, status=404)
    return JsonResponse({"id": job.id, "state": job.state, "total": job.total, "sent": job.sent,
                         "skipped": job.skipped, "failed": job.failed, "percent": job.percent, "error": job.error})


@require_POST
def api_retry(request, ident):
    """The API's retry: the same claim, so a script that repeats itself sends once."""
    _require_act(request)
    try:
        seen = int(request.POST.get("attempt", ""))
    except ValueError:
        return JsonResponse({"error": "attempt (the attempt number last seen) is required"}, status=400)
    attempt = tasks_dlq.claim(ident, seen, request.user)
    if attempt is None:
        _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": seen}, "refused: already retried or changed")
        return JsonResponse({"error": "already retried, changed, or not retryable"}, status=409)
    entry = _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": attempt.attempt,
                                                                    "msg_id": attempt.msg_id}, "queued")
    tasks_dlq.retry_dead_letter.delay(attempt.id, entry.id)
    return JsonResponse({"attempt": attempt.attempt, "msg_id": attempt.msg_id}, status=202)

