from django.urls import path

from dashboard.live import views

urlpatterns = [
    path("live/", views.live, name="live"),
]
