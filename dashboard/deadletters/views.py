"""Dead letters: browse them, retry (one, a selection, everything matching a filter),
discard or resolve them; and the audit log of every such action.

The web side never talks to a broker: a retry is claimed here (see `collector.deadletters.claims`)
and sent by a Celery task (`dashboard.deadletters.tasks`). A claim whose task cannot be
queued is given back at once, with the reason."""
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from collector.deadletters import claims
from collector.deadletters import readers as dlq_readers
from collector.deadletters.follow import FOLLOW_GIVE_UP
from collector.keyset import BadFilter
from collector.live import summaries as live_summaries
from collector.models import AuditEntry, DeadLetter, RetryAttempt, RetryJob, RuntimeSettings
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


def _enqueue(task, *args):
    """Queue a task; None when queued, else why not (and then nothing was sent)."""
    try:
        task.delay(*args)
    except Exception as error:  # Redis down or unreachable: the task never reached the queue
        return f"not queued: the task queue is unreachable ({error or type(error).__name__}); nothing was sent"
    return None


def _enqueue_retry(attempt, entry):
    """Queue the republish of a claimed attempt; on failure give the claim back and say why."""
    problem = _enqueue(tasks_dlq.retry_dead_letter, attempt.id, entry.id)
    if problem:
        claims.release(attempt.id, problem)
        AuditEntry.objects.filter(pk=entry.pk).update(result=f"failed: {problem}"[:500])
    return problem


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
    following, stalled = _following(letter, history[0] if history else None)
    raw = bytes(letter.raw) if letter.raw is not None else None
    return render(request, "deadletters/dlq_detail.html", {
        "letter": letter, "history": history, "died_again": dlq_readers.died_again(letter),
        "headers": sorted((letter.headers or {}).items()), "text": raw_text(raw) if raw is not None else None,
        "pretty": _pretty(raw), "hex": hexdump(raw) if raw is not None else "",
        "trace_url": _trace_url(letter.trace_id), "can_act": can_act,
        "can_edit": can_act and has_role(request.user, "admin"), "following": following, "stalled": stalled,
        "stale_seconds": settings.RETRY_STALE_SECONDS,
        "edit_headers": "\n".join(f"{k}: {v}" for k, v in (letter.headers or {}).items()
                                  if not k.lower().startswith(tasks_dlq.DROPPED_HEADERS)),
    })


def _following(letter, latest):
    """(reload the page?, stalled?). The page follows a retry while a worker may still be
    moving it, or while the sent message waits for its consumer; never a claim that nobody
    has moved for RETRY_STALE_SECONDS (the collector settles those), nor forever."""
    now = timezone.now()
    if letter.status == DeadLetter.Status.RETRYING:
        moved = max(filter(None, [letter.updated, latest.sent_at if latest else None]))
        stalled = now - moved > timedelta(seconds=settings.RETRY_STALE_SECONDS)
        return not stalled, stalled
    waiting = (latest is not None and latest.followup == RetryAttempt.FollowUp.PENDING
               and latest.outcome in RetryAttempt.LANDED and latest.sent_at and now - latest.sent_at < FOLLOW_GIVE_UP)
    return bool(waiting), False


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
    # Reload while it runs, but not on a job nobody has moved for RETRY_STALE_SECONDS.
    moved = job.heartbeat or job.created
    stale = timezone.now() - moved > timedelta(seconds=settings.RETRY_STALE_SECONDS)
    return render(request, "deadletters/dlq_job.html", {
        "job": job, "running": job.state in ("queued", "running") and not stale,
        "quiet": job.state in ("queued", "running") and stale, "stale_seconds": settings.RETRY_STALE_SECONDS})


# --- actions (POST only; CSRF is checked by the middleware) -------------------------------


@require_POST
def retry(request, ident):
    """Claim the next attempt of one dead letter and enqueue its republish. The form's
    `attempt` is the attempt the page showed: a second click finds it changed. When the
    last attempt's outcome is unknown, `recheck` queues that attempt again (looked for on
    the stream, sent only if absent) and `new_message` sends a new one."""
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
    recheck = bool(request.POST.get("recheck")) and edited_raw is None
    if recheck:
        attempt = claims.claim_recheck(ident, seen)
    else:
        attempt = claims.claim(ident, seen, request.user, edited_headers, edited_raw,
                               as_new_message=bool(request.POST.get("new_message")))
    if attempt is None:
        _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": seen}, "refused: already retried or changed")
        messages.warning(request, "Someone else already retried this dead letter (or it changed); nothing was sent again.")
        return back
    entry = _audit(request, "dlq.retry", f"dead letter {ident}",
                   {"attempt": attempt.attempt, "subject": attempt.subject, "msg_id": attempt.msg_id,
                    "edited": edited_raw is not None, "recheck": recheck}, "queued")
    problem = _enqueue_retry(attempt, entry)
    if problem:
        messages.error(request, f"Not retried: {problem}")
    elif recheck:
        messages.success(request, f"Checking retry {attempt.attempt}: it is looked for on the stream of "
                                  f"{attempt.subject} and sent only if absent")
    else:
        messages.success(request, f"Retry {attempt.attempt} queued: republishing to {attempt.subject}")
    return back


def _close(request, ident, status, action):
    _require_act(request)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, f"Not {status}: say why")
        return redirect("dead_letter", ident)
    changed = DeadLetter.objects.filter(pk=ident, status__in=DeadLetter.OPEN).update(
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
    problem = _enqueue(tasks_dlq.run_retry_job, job.id, entry.id)
    if problem:
        RetryJob.objects.filter(pk=job.id).update(state=RetryJob.State.FAILED, error=problem, finished=timezone.now())
        AuditEntry.objects.filter(pk=entry.pk).update(result=f"failed: {problem}"[:500])
        messages.error(request, f"Not retried: {problem}")
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
    """The API's retry: the same claim, so a script that repeats itself sends once. When
    the last attempt's outcome is unknown it is checked again (sent only if absent from
    the stream), unless `new_message=1` asks for a new message."""
    _require_act(request)
    try:
        seen = int(request.POST.get("attempt", ""))
    except ValueError:
        return JsonResponse({"error": "attempt (the attempt number last seen) is required"}, status=400)
    reserved = [name for name in request.POST if name.lower() in ("headers", "nats-msg-id")
                or name.lower().startswith("eventscope-")]
    if reserved:
        return JsonResponse({"error": f"{reserved[0]}: a retry sends the dead message as it was; Nats-Msg-Id and "
                                      "Eventscope-* headers are set by Eventscope only"}, status=400)
    new_message = request.POST.get("new_message") in ("1", "true")
    attempt = claims.claim(ident, seen, request.user, as_new_message=new_message)
    recheck = False
    if attempt is None and not new_message:
        attempt = claims.claim_recheck(ident, seen)
        recheck = attempt is not None
    if attempt is None:
        _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": seen}, "refused: already retried or changed")
        return JsonResponse({"error": "already retried, changed, or not retryable"}, status=409)
    entry = _audit(request, "dlq.retry", f"dead letter {ident}", {"attempt": attempt.attempt,
                                                                    "msg_id": attempt.msg_id, "recheck": recheck}, "queued")
    problem = _enqueue_retry(attempt, entry)
    if problem:
        return JsonResponse({"error": problem}, status=503)
    return JsonResponse({"attempt": attempt.attempt, "msg_id": attempt.msg_id, "recheck": recheck}, status=202)

