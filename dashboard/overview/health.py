"""/healthz: up or down per dependency, for load balancers and compose. No login.

Anyone sees each component's name and "up" or "down"; why one is down (an exception's
text names hosts, users, paths) is shown only to logged-in admins, as `<component>_error`."""
import socket
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone

from collector.roles import has_role
from collector.secrets import redact_text


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _nats():
    parts = urlsplit(settings.NATS_URL.split(",")[0])
    with socket.create_connection((parts.hostname, parts.port or 4222), timeout=2) as sock:
        sock.settimeout(2)
        if not sock.recv(4096).startswith(b"INFO "):
            raise ConnectionError("not a NATS server")


def _redis():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _collector():
    from collector.models import CollectorHeartbeat

    beat = CollectorHeartbeat.objects.order_by("-beat").values_list("beat", flat=True).first()
    if beat is None:
        raise LookupError("no heartbeat yet")
    age = (timezone.now() - beat).total_seconds()
    if age > settings.COLLECTOR_STALE_SECONDS:
        raise LookupError(f"last heartbeat {int(age)} s ago")
    # Beating is not enough: a collector whose ack floor is stuck stores nothing.
    fresh = timezone.now() - timedelta(seconds=settings.COLLECTOR_STALE_SECONDS)
    stalled = CollectorHeartbeat.objects.filter(beat__gte=fresh).exclude(stalled="").order_by("-beat").first()
    if stalled is not None:
        raise LookupError(f"collector {stalled.name} stalled: {stalled.stalled}")


CHECKS = {"database": _database, "broker": _nats, "redis": _redis, "collector": _collector}


def _shows_details(request):
    """Admins (role admin or superuser) see why a component is down. Finding the user needs
    the database, which may be what is down: then nobody gets details."""
    try:
        return has_role(request.user, "admin")
    except Exception:  # the database is unreachable: the answer stays 503, without details
        return False


def healthz(request):
    details = _shows_details(request)
    report, healthy = {}, True
    for name, check in CHECKS.items():
        if name == "collector" and report.get("database") != "up":
            report[name] = "down"
            healthy = False
            continue
        try:
            check()
            report[name] = "up"
        except Exception as error:  # a health check reports every failure, whatever its kind
            report[name] = "down"
            if details:
                report[name + "_error"] = redact_text(str(error))[:200]
            healthy = False
    return JsonResponse(report, status=200 if healthy else 503)
