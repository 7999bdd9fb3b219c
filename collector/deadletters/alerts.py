"""Dead-letter alerts: thresholds over the rollup, recorded once per crossing; the worker
posts them to the threshold's webhook.

Every collector checks the thresholds. The check of one threshold holds a row lock on it,
so a second collector waits and then sees the first one's alert; the alert's (threshold,
window start) key is unique besides, so no crossing is ever recorded twice. Delivery never
runs in the collector: the alert is handed to the worker by task name
(`eventscope.send_alert`, in dashboard/deadletters/tasks.py), and the task claims it with
a conditional UPDATE, so a task delivered twice posts once.
"""
import logging
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from collector.deadletters import webhooks

log = logging.getLogger("eventscope.deadletters")

SEND_ALERT = "eventscope.send_alert"
REQUEUE_AFTER = timedelta(minutes=5)  # a queued alert no worker took (broker was down, task lost)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def window_start(threshold, now):
    """The start of the threshold's window that holds `now`, windows aligned to its length.
    A threshold raises at most once per `minutes`, so two of its alerts never share one."""
    length = timedelta(minutes=max(threshold.minutes, 1))
    return now - (now - EPOCH) % length


def check_thresholds(now=None):
    """Record an alert for each threshold crossed (once per its window) and queue its
    webhook delivery. Counts come from the rollup. Returns the new alerts."""
    from django.utils import timezone as dj_timezone

    from collector.models import DeadLetterThreshold

    now = now or dj_timezone.now()
    raised = [alert for threshold in DeadLetterThreshold.objects.filter(enabled=True)
              if (alert := _check(threshold.pk, now)) is not None]
    requeue_stale(now)
    return raised


def _check(threshold_id, now):
    from django.db.models import Sum

    from collector.ingest.subjects import matches
    from collector.models import DeadLetterAlert, DeadLetterRollup, DeadLetterThreshold

    with transaction.atomic():
        # The lock makes the check and the insert one step across collectors.
        threshold = DeadLetterThreshold.objects.select_for_update().filter(pk=threshold_id, enabled=True).first()
        if threshold is None:
            return None
        since = now - timedelta(minutes=threshold.minutes)
        if DeadLetterAlert.objects.filter(threshold=threshold, at__gte=since).exists():
            return None  # already raised for this window
        rows = DeadLetterRollup.objects.filter(minute__gte=since.replace(second=0, microsecond=0))
        if threshold.consumer:
            rows = rows.filter(consumer=threshold.consumer)
        per_subject = rows.values_list("subject").annotate(total=Sum("count"))
        counts = {subject: total for subject, total in per_subject if matches(threshold.subject_pattern, subject)}
        total = sum(counts.values())
        if total <= threshold.count:
            return None
        delivery = DeadLetterAlert.Delivery.PENDING if threshold.webhook else DeadLetterAlert.Delivery.NONE
        try:
            with transaction.atomic():
                alert = DeadLetterAlert.objects.create(
                    threshold=threshold, window_start=window_start(threshold, now), count=total,
                    detail={"subjects": counts, "since": since.isoformat()}, webhook=threshold.webhook,
                    delivery=delivery, queued_at=now if threshold.webhook else None)
        except IntegrityError:
            return None  # recorded by another collector for this window
        if threshold.webhook:
            transaction.on_commit(lambda: enqueue(alert.id))
    return alert


def requeue_stale(now):
    """Hand alerts back to the worker that were queued long ago and never taken; the
    conditional UPDATE makes one collector do it."""
    from collector.models import DeadLetterAlert

    stale = DeadLetterAlert.objects.filter(delivery=DeadLetterAlert.Delivery.PENDING,
                                           queued_at__lt=now - REQUEUE_AFTER)
    for alert_id in stale.values_list("id", flat=True)[:100]:
        if DeadLetterAlert.objects.filter(pk=alert_id, delivery=DeadLetterAlert.Delivery.PENDING,
                                          queued_at__lt=now - REQUEUE_AFTER).update(queued_at=now):
            enqueue(alert_id)


_client = None


def _celery():
    """A Celery client of the worker's broker; the collector sends tasks by name only."""
    global _client
    if _client is None:
        from celery import Celery

        _client = Celery("eventscope-collector", broker=settings.CELERY_BROKER_URL)
    return _client


def enqueue(alert_id):
    try:
        _celery().send_task(SEND_ALERT, args=[alert_id], retry=False)
    except Exception as error:  # the alert stays pending and is queued again later
        log.warning("alert %s not queued for delivery (%s); trying again in %s", alert_id, error, REQUEUE_AFTER)


def deliver(alert_id, timeout=5.0):
    """Post one alert to its webhook (the worker's task). Claimed from pending (or from a
    `sending` left by a worker that died long ago), so it is posted at most once per claim.
    Returns the outcome line kept with the alert."""
    from django.utils import timezone as dj_timezone

    from collector.models import DeadLetterAlert, DeadLetterSettings

    now = dj_timezone.now()
    Delivery = DeadLetterAlert.Delivery
    claimable = Q(delivery=Delivery.PENDING) | Q(delivery=Delivery.SENDING, queued_at__lt=now - REQUEUE_AFTER)
    if not DeadLetterAlert.objects.filter(claimable, pk=alert_id).update(delivery=Delivery.SENDING, queued_at=now):
        return "taken by another worker"
    alert = DeadLetterAlert.objects.select_related("threshold").get(pk=alert_id)
    allow_private = DeadLetterSettings.load().allow_private_webhooks
    body = {"alert": alert.id, "threshold": str(alert.threshold), "count": alert.count,
            "subjects": alert.detail.get("subjects", {}), "since": alert.detail.get("since")}
    posted, line = webhooks.post(alert.webhook, body, allow_private, timeout)
    if posted:
        outcome = Delivery.POSTED
    else:
        outcome = Delivery.REFUSED if line.startswith("refused:") else Delivery.FAILED
    DeadLetterAlert.objects.filter(pk=alert_id).update(delivery=outcome, notified=line[:500],
                                                       delivered_at=dj_timezone.now())
    if outcome != Delivery.POSTED:
        log.warning("alert %s to %s %s", alert_id, alert.webhook, line)
    return line
