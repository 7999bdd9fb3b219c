"""Start-up for the long-running entry points (daphne, celery): a bad setting ends the
process with one line naming it instead of a traceback."""
import os
import sys


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    from dashboard.env import ConfigError

    try:
        django.setup()
    except ConfigError as error:
        print(f"Eventscope: bad setting: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
