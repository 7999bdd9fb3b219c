"""Dead letters: the list, one letter, Retry (claimed here, sent by a Celery task), bulk jobs
and their API. Imports `collector` (models, readers, rules) and dashboard helpers."""
