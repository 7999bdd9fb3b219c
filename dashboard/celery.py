from celery import Celery

from dashboard.boot import setup_django

setup_django()

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each capability keeps its tasks in `dashboard/<capability>/tasks.py`.
app.autodiscover_tasks(["dashboard.events", "dashboard.deadletters"])
