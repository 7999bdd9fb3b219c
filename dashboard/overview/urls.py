from django.urls import path

from dashboard.overview import health, views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("search/", views.search, name="search"),
    path("api/overview", views.api_overview, name="api_overview"),
    path("healthz", health.healthz, name="healthz"),
]
