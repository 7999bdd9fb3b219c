"""The Django project (settings, urls, asgi, celery app) and the web side: one room per
capability (views, API, urls, tasks), shared helpers (time window, presenters, middleware).
Imports `collector`; `collector` never imports this package."""
