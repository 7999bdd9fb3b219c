from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self):
        from dashboard import login_throttle  # noqa: F401 (connects the lockout audit)


class EventscopeAdminConfig(AdminConfig):
    default_site = "dashboard.admin_site.EventscopeAdminSite"
