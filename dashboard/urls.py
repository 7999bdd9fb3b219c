"""The URL map: one `urls` module per capability, global URL names (no namespaces), so
`reverse("topics")` and the navigation keep working wherever a view lives."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", include("dashboard.overview.urls")),
    path("", include("dashboard.events.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.traces.urls")),
    path("", include("dashboard.deadletters.urls")),
    path("", include("dashboard.lag.urls")),
    path("", include("dashboard.audit.urls")),
    path("", include("dashboard.live.urls")),
    path("", include("dashboard.versions.urls")),
    path("", include("dashboard.topology.urls")),
]
