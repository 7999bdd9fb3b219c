"""Dead-letter alerts: thresholds over the rollup, recorded once per window and posted
to the threshold's webhook."""
import json
from datetime import timedelta


def check_thresholds(now=None):
    """Record an alert for each threshold crossed (once per its window) and post it to the
    threshold's webhook. Counts come from the rollup. Returns the new alerts."""
    from django.db.models import Sum
    from django.utils import timezone as dj_timezone

    from collector.ingest.subjects import matches
    from collector.models import DeadLetterAlert, DeadLetterRollup, DeadLetterThreshold

    now = now or dj_timezone.now()
    raised = []
    for threshold in DeadLetterThreshold.objects.filter(enabled=True):
        since = now - timedelta(minutes=threshold.minutes)
        if DeadLetterAlert.objects.filter(threshold=threshold, at__gte=since).exists():
            continue  # already raised for this window
        rows = DeadLetterRollup.objects.filter(minute__gte=since.replace(second=0, microsecond=0))
        if threshold.consumer:
            rows = rows.filter(consumer=threshold.consumer)
        per_subject = rows.values_list("subject").annotate(total=Sum("count"))
        counts = {subject: total for subject, total in per_subject if matches(threshold.subject_pattern, subject)}
        total = sum(counts.values())
        if total <= threshold.count:
            continue
        alert = DeadLetterAlert.objects.create(threshold=threshold, count=total,
                                               detail={"subjects": counts, "since": since.isoformat()})
        if threshold.webhook:
            alert.notified = notify(threshold.webhook, {
                "alert": alert.id, "threshold": str(threshold), "count": total, "subjects": counts,
                "since": since.isoformat()})
            alert.save(update_fields=["notified"])
        raised.append(alert)
    return raised


def notify(url, body, timeout=5):
    """POST the alert as JSON; returns the outcome as one line (kept with the alert)."""
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"posted: HTTP {response.status}"
    except Exception as error:  # a webhook that is down must not stop capture
        return f"not posted: {error}"[:500]
