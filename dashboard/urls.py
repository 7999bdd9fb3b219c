from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard.views import health, overview

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("search/", overview.search, name="search"),
    path("healthz", health.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
