"""Django settings: everything a process needs comes from environment variables.

What operators change while Eventscope runs (brokers, decoding rules, thresholds,
retention, read-only mode) lives in the database and is edited in the admin.
"""
from datetime import timedelta
from pathlib import Path

from dashboard.env import (
    celery_redis_url,
    database_from_url,
    env_bool,
    env_choice,
    env_file,
    env_hostports,
    env_int,
    env_list,
    env_nats_name,
    env_port,
    env_secret_key,
    env_seconds,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# With DEBUG off a weak or example key stops start-up: share links are signed with it.
SECRET_KEY = env_secret_key("SECRET_KEY", debug=DEBUG)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env_url("DATABASE_URL", None, ("postgresql", "postgres"))
if DATABASE_URL is None:
    from dashboard.env import ConfigError

    raise ConfigError("DATABASE_URL is not set (e.g. postgresql://user:pass@host:5432/eventscope)")
DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
# Web requests only (dashboard.middleware.StatementTimeoutMiddleware): a query of a page or
# the API that runs longer is stopped and answered with a clear 503. The collector and the
# workers never run the middleware, so they are not bound by it. 0: no limit.
DB_STATEMENT_TIMEOUT = env_seconds("DB_STATEMENT_TIMEOUT", 15, maximum=3600)
# Filters that read every stored message of the window (contains, JSON path, header) take
# windows of at most this many hours. 6 h keeps such a page under 300 ms on a topic of ~2.7
# messages/s (docs/SCALING.md); a quieter install may raise it.
EVENT_SCAN_WINDOW_HOURS = env_int("EVENT_SCAN_WINDOW_HOURS", 6, minimum=1, maximum=366 * 24)

NATS_URL = env_url("NATS_URL", "nats://127.0.0.1:4222", ("nats", "tls", "ws", "wss"), several=True)
NATS_CREDS = env_file("NATS_CREDS")
NATS_TLS_CA = env_file("NATS_TLS_CA")
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix"))
# The collector's durable observer consumers (collector/brokers/nats.py reads the same
# variable); a name the server refuses would leave every stream unobserved.
EVENTSCOPE_CONSUMER = env_nats_name("EVENTSCOPE_CONSUMER", "eventscope")
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
RABBITMQ_URL = env_url("RABBITMQ_URL", None, ("amqp", "amqps"))
# Kafka: a cluster's seed brokers (host:port, comma-separated) and how to reach them securely.
KAFKA_BOOTSTRAP_SERVERS = env_hostports("KAFKA_BOOTSTRAP_SERVERS")
KAFKA_SECURITY_PROTOCOL = env_choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
                                     ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
KAFKA_SASL_MECHANISM = env_choice("KAFKA_SASL_MECHANISM", "PLAIN", ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
KAFKA_SASL_USERNAME = env_str("KAFKA_SASL_USERNAME", None)
KAFKA_SASL_PASSWORD = env_str("KAFKA_SASL_PASSWORD", None)
KAFKA_SSL_CAFILE = env_file("KAFKA_SSL_CAFILE")
if KAFKA_SECURITY_PROTOCOL.startswith("SASL_") and not (KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD):
    from dashboard.env import ConfigError

    raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={KAFKA_SECURITY_PROTOCOL} needs KAFKA_SASL_USERNAME and "
                      "KAFKA_SASL_PASSWORD")
# Its management API (queue lag, exchange discovery, the firehose); unset: the AMQP host on port
# 15672 with the AMQP credentials.
RABBITMQ_MANAGEMENT_URL = env_url("RABBITMQ_MANAGEMENT_URL", None, ("http", "https"))
# The tap is fed by the firehose where the management API can turn it on (it costs the broker
# a copy of each publish); false: bindings to each exchange only.
RABBITMQ_FIREHOSE = env_bool("RABBITMQ_FIREHOSE", True)

EVENTSCOPE_HTTP_PORT = env_port("EVENTSCOPE_HTTP_PORT", 8000)
EVENTSCOPE_METRICS_PORT = env_int("EVENTSCOPE_METRICS_PORT", 9464, minimum=0, maximum=65535)  # 0: off
# /metrics stays on loopback unless a scraper elsewhere needs it (compose sets 0.0.0.0).
EVENTSCOPE_METRICS_HOST = env_str("EVENTSCOPE_METRICS_HOST", "127.0.0.1")
EVENTSCOPE_SPANS_HOST = env_str("EVENTSCOPE_SPANS_HOST", "0.0.0.0")
# Unset: the span receivers take spans from anyone, as a Jaeger or OTLP collector does.
SPAN_RECEIVER_TOKEN = env_str("SPAN_RECEIVER_TOKEN", None)
# UDP cannot carry the token: with one set, the Jaeger agent ports open only when this is true.
JAEGER_UDP_OPEN = env_bool("JAEGER_UDP_OPEN", False)
JAEGER_AGENT_PORT = env_port("JAEGER_AGENT_PORT", 6831)
JAEGER_BINARY_PORT = env_port("JAEGER_BINARY_PORT", 6832)
JAEGER_HTTP_PORT = env_port("JAEGER_HTTP_PORT", 14268)
OTLP_HTTP_PORT = env_port("OTLP_HTTP_PORT", 4318)
OTLP_GRPC_PORT = env_port("OTLP_GRPC_PORT", 4317)
# False: `manage.py collect` opens no span ports; `manage.py receive_spans` serves them
# (a service of its own, so collectors scale without colliding on ports).
EVENTSCOPE_SPAN_RECEIVERS = env_bool("EVENTSCOPE_SPAN_RECEIVERS", True)
# Processes that decode messages beside the collector's event loop (0: decode in the loop).
EVENTSCOPE_DECODE_WORKERS = env_int("EVENTSCOPE_DECODE_WORKERS", 1, minimum=0, maximum=64)
# The collector's heartbeat older than this marks it down on /healthz.
COLLECTOR_STALE_SECONDS = env_int("COLLECTOR_STALE_SECONDS", 30, minimum=1)
# A collector whose observers' ack floor has not moved for this long while messages are
# pending is stalled: /healthz reports it down.
COLLECTOR_STALL_SECONDS = env_int("COLLECTOR_STALL_SECONDS", 120, minimum=1)

INSTALLED_APPS = [
    "daphne",
    "dashboard.apps.EventscopeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "collector",
    "dashboard.apps.DashboardConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "dashboard.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dashboard.middleware.BearerTokenMiddleware",
    "dashboard.middleware.LoginRequiredMiddleware",
    "dashboard.middleware.RoleRequiredMiddleware",
    "dashboard.middleware.StatementTimeoutMiddleware",
    "dashboard.middleware.TimeWindowMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "dashboard" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context.navigation",
            ],
        },
    },
]

# Messages that may wait on the channel layer for a web process before new ones are
# dropped (channels_redis does so without a word, checked by the sender: the collector;
# the live tail sees the gap and backfills it from the store).
EVENTSCOPE_CHANNEL_CAPACITY = env_int("EVENTSCOPE_CHANNEL_CAPACITY", 100, minimum=1)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
            # channels_redis blocks in BZPOPMIN: idle sockets then die every ~5 s
            # (django/channels_redis#422). A longer read timeout still notices a dead Redis.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
            "capacity": EVENTSCOPE_CHANNEL_CAPACITY,
        },
    }
}

CELERY_BROKER_URL = celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = celery_redis_url(REDIS_URL)
# A task is acknowledged when it has finished, and a task whose worker process died is put
# back on the queue (not acknowledged as Celery does by default), so a killed prefork child's
# retry runs again at once. A whole worker that dies leaves its tasks unacknowledged in Redis:
# they are delivered again once the visibility timeout has passed (so it must be longer than
# the longest task: a bulk retry job). A retry delivered twice still sends once (see
# dashboard/deadletters/tasks.py).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Look for tasks past their visibility timeout every few seconds (kombu's default scan
    # runs only every ~100 s), and never wait minutes on an unreachable Redis.
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": 5,
}
# A retry claim (or bulk job) nobody has moved on for this long is settled by the collector:
# never taken -> failed, taken by a worker now gone -> outcome unknown, a job -> stalled.
RETRY_STALE_SECONDS = env_int("RETRY_STALE_SECONDS", 300, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"

# Failed logins are throttled by django-axes, per user name and per address apart: after
# LOGIN_FAILURE_LIMIT failures either one is locked out for LOGIN_LOCKOUT_MINUTES (a correct
# password included); each lockout is on the audit log (dashboard.login_throttle).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# Static files are served from the app folders (WHITENOISE_USE_FINDERS); set STATIC_ROOT
# only to run collectstatic for a CDN or a separate web server.
STATIC_ROOT = env_str("STATIC_ROOT", None)
STATICFILES_DIRS = []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app folders so a fresh checkout needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Error pages (DEBUG) and error reports show settings, request headers and local variables:
# every URL in them loses its credentials, not only names Django deems secret.
DEFAULT_EXCEPTION_REPORTER_FILTER = "dashboard.reporting.RedactingExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "dashboard.reporting.RedactingExceptionReporter"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The formatter redacts credentials in URLs from every line (collector/secrets.py).
    "formatters": {"plain": {"()": "collector.secrets.RedactingFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
