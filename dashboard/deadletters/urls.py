from django.urls import path

from dashboard.deadletters import views as dlq

urlpatterns = [
    path("dlq/", dlq.dlq_list, name="dlq"),
    path("dlq/retry/", dlq.bulk_retry, name="dlq_bulk_retry"),
    path("dlq/jobs/<int:ident>/", dlq.job_detail, name="dlq_job"),
    path("dlq/<int:ident>/", dlq.dead_letter_detail, name="dead_letter"),
    path("dlq/<int:ident>/retry/", dlq.retry, name="dead_letter_retry"),
    path("dlq/<int:ident>/discard/", dlq.discard, name="dead_letter_discard"),
    path("dlq/<int:ident>/resolve/", dlq.resolve, name="dead_letter_resolve"),
    path("api/dlq", dlq.api_list, name="api_dlq"),
    path("api/dlq/jobs/<int:ident>", dlq.api_job, name="api_dlq_job"),
    path("api/dlq/<int:ident>", dlq.api_detail, name="api_dead_letter"),
    path("api/dlq/<int:ident>/retry", dlq.api_retry, name="api_dead_letter_retry"),
]
