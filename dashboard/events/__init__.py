"""Events: topics and their messages, one message, publishing (a Celery task), and their
JSON API. Imports `collector` (models, readers) and dashboard helpers."""
