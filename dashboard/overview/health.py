"""/healthz: up or down per dependency, for load balancers and compose. No login."""
import socket
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone


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


def healthz(request):
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
            report[name + "_error"] = str(error)[:200]
            healthy = False
    return JsonResponse(report, status=200 if healthy else 503)
