"""Error pages and error reports without credentials.

Django hides settings whose names look secret (KEY, SECRET, PASS, TOKEN …), but a
password inside `DATABASE_URL`, `NATS_URL`, `REDIS_URL`, `CELERY_BROKER_URL` or the
channel layer's hosts is shown in full, as is one in a local variable or an exception
message. Here every URL anywhere in a report goes through `collector.secrets.redact_url`.
"""
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from collector.secrets import redact_text


def _redacted(value):
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        # Dicts, lists and tuples come back through here element by element.
        return _redacted(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if not isinstance(value, str):
                # The page shows the repr: an object holding a URL shows it there.
                try:
                    shown = repr(value)
                except Exception:  # a broken __repr__ is the page's business, not ours
                    shown = ""
                if "://" in shown and redact_text(shown) != shown:
                    value = redact_text(shown)
            variables.append((name, _redacted(value)))
        return variables


class RedactingExceptionReporter(ExceptionReporter):
    """The exception's message (a driver's "cannot connect to redis://:pw@…") is redacted too."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        if data.get("exception_value"):
            data["exception_value"] = redact_text(str(data["exception_value"]))
        for frame in data.get("frames", []):
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = redact_text(str(frame["exc_cause"]))
        return data
