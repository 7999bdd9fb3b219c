"""Django settings: everything a process needs comes from environment variables.

What operators change while Eventscope runs (brokers, decoding rules, thresholds,
retention, read-only mode) lives in the database and is edited in the admin.
"""
from pathlib import Path

from dashboard.env import (
    database_from_url,
    env_bool,
    env_file,
    env_int,
    env_list,
    env_port,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", required=True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env_url("DATABASE_URL", None, ("postgresql", "postgres"))
if DATABASE_URL is None:
    from dashboard.env import ConfigError

    raise ConfigError("DATABASE_URL is not set (e.g. postgresql://user:pass@host:5432/eventscope)")
DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}

NATS_URL = env_url("NATS_URL", "nats://127.0.0.1:4222", ("nats", "tls", "ws", "wss"))
NATS_CREDS = env_file("NATS_CREDS")
NATS_TLS_CA = env_file("NATS_TLS_CA")
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix"))
RABBITMQ_URL = env_url("RABBITMQ_URL", None, ("amqp", "amqps"))

EVENTSCOPE_HTTP_PORT = env_port("EVENTSCOPE_HTTP_PORT", 8000)
EVENTSCOPE_METRICS_PORT = env_int("EVENTSCOPE_METRICS_PORT", 9464, minimum=0, maximum=65535)  # 0: off
EVENTSCOPE_SPANS_HOST = env_str("EVENTSCOPE_SPANS_HOST", "0.0.0.0")
JAEGER_AGENT_PORT = env_port("JAEGER_AGENT_PORT", 6831)
JAEGER_BINARY_PORT = env_port("JAEGER_BINARY_PORT", 6832)
JAEGER_HTTP_PORT = env_port("JAEGER_HTTP_PORT", 14268)
OTLP_HTTP_PORT = env_port("OTLP_HTTP_PORT", 4318)
OTLP_GRPC_PORT = env_port("OTLP_GRPC_PORT", 4317)
# Processes that decode messages beside the collector's event loop (0: decode in the loop).
EVENTSCOPE_DECODE_WORKERS = env_int("EVENTSCOPE_DECODE_WORKERS", 1, minimum=0, maximum=64)
# The collector's heartbeat older than this marks it down on /healthz.
COLLECTOR_STALE_SECONDS = env_int("COLLECTOR_STALE_SECONDS", 30, minimum=1)

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
    "dashboard.middleware.TimeWindowMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
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

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
