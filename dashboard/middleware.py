from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.utils import timezone

# A Content-Security-Policy without 'unsafe-inline' scripts: pages render payloads
# written by others, so no script may come from anywhere but our static files.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # 'self' covers ws:// and wss:// to this origin (CSP Level 3): the live view's
        # websocket, and nothing else.
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

PUBLIC_PREFIXES = ("/healthz", "/accounts/login/", "/static/", "/share/", "/favicon.ico")
API_PREFIXES = ("/api/", "/jaeger/")
NO_ROLE_MESSAGE = "Your account has no role yet: ask an admin to grant you one (viewer, operator or admin)."


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CSP)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


class BearerTokenMiddleware:
    """`Authorization: Bearer <token>` logs a script in for this request only.
    A bad token is refused outright rather than falling back to anonymous."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            from collector.models import ApiToken

            token = ApiToken.user_for(header[7:].strip())
            if token is None or not token.user.is_active:
                return JsonResponse({"error": "invalid or revoked API token"}, status=401)
            request.user = token.user
            # Tokens come from scripts, never from a browser form: no CSRF cookie to check.
            request._dont_enforce_csrf_checks = True
            if token.last_used is None or (timezone.now() - token.last_used).total_seconds() > 60:
                type(token).objects.filter(pk=token.pk).update(last_used=timezone.now())
        return self.get_response(request)


class LoginRequiredMiddleware:
    """Every URL needs a logged-in user except the few public ones; APIs answer 401."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The path first: /healthz must answer even when the session store (the database) is down.
        if not request.path.startswith(PUBLIC_PREFIXES) and not request.user.is_authenticated:
            if request.path.startswith(API_PREFIXES):
                return JsonResponse({"error": "authentication required"}, status=401)
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return self.get_response(request)


class RoleRequiredMiddleware:
    """A logged-in user in no role group sees no data: pages answer 403 with a page that
    says an admin must grant a role, the APIs a 403 JSON error. Logging out still works."""

    EXEMPT = ("/accounts/logout/",)

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from collector.roles import ROLES, has_role

        path = request.path
        if (request.user.is_authenticated and not path.startswith(PUBLIC_PREFIXES + self.EXEMPT)
                and not has_role(request.user, *ROLES)):
            if path.startswith(API_PREFIXES):
                return JsonResponse({"error": NO_ROLE_MESSAGE}, status=403)
            from django.shortcuts import render

            return render(request, "no_role.html", {"message": NO_ROLE_MESSAGE}, status=403)
        return self.get_response(request)


def _is_statement_timeout(error):
    from django.db import OperationalError
    from psycopg.errors import QueryCanceled

    return isinstance(error, OperationalError) and isinstance(error.__cause__, QueryCanceled)


class StatementTimeoutMiddleware:
    """Bound every query a web request makes by DB_STATEMENT_TIMEOUT, so no filter or window
    holds the database for long; when the limit stops a query, answer 503 with a page (JSON
    on the APIs) that says so. The limit is set on the request's connection when the request
    starts and reset when it ends: the collector and workers never pass through here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.db import DatabaseError, connection

        seconds = settings.DB_STATEMENT_TIMEOUT
        if not seconds:
            return self.get_response(request)
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{max(1, round(seconds * 1000))}ms"])
        try:
            return self.get_response(request)
        finally:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET statement_timeout")
            except DatabaseError:
                pass  # the connection is gone or mid-failure; a new one starts without the limit

    def process_exception(self, request, exception):
        if not _is_statement_timeout(exception):
            return None
        from django.db import DatabaseError, connection

        try:
            with connection.cursor() as cursor:  # the error page itself must not be cut short
                cursor.execute("RESET statement_timeout")
        except DatabaseError:
            pass
        seconds = settings.DB_STATEMENT_TIMEOUT
        message = (f"This query took longer than {seconds:g} s (DB_STATEMENT_TIMEOUT) and was stopped. "
                   "Narrow the time window or the filters and try again.")
        if request.path.startswith(API_PREFIXES):
            return JsonResponse({"error": message, "timeout_seconds": seconds}, status=503)
        from django.shortcuts import render

        return render(request, "timeout.html", {"message": message}, status=503)


class TimeWindowMiddleware:
    """Parse the page's time window once; a malformed one is a 400 with the reason."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from dashboard import timewindow

        try:
            request.window = timewindow.from_query(request.GET)
        except timewindow.BadWindow as error:
            if request.path.startswith(API_PREFIXES):
                return JsonResponse({"error": str(error)}, status=400)
            from django.http import HttpResponseBadRequest

            return HttpResponseBadRequest(f"Bad time window: {error}", content_type="text/plain")
        return self.get_response(request)
