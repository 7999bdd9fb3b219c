from django.contrib import admin


class EventscopeAdminSite(admin.AdminSite):
    site_header = "Eventscope administration"
    site_title = "Eventscope admin"
    index_title = "Brokers, rules, thresholds, users"
    site_url = "/"

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every ModelAdmin, ours or another app's, writes its changes to the audit log."""
        from dashboard.admin_audit import AuditedAdmin

        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedAdmin):
            admin_class = type(admin_class.__name__, (AuditedAdmin, admin_class), {"__module__": admin_class.__module__})
        super().register(model_or_iterable, admin_class, **options)

    def has_permission(self, request):
        """Only the `admin` role (and superusers) reach the admin; viewers and
        operators are refused even if someone marked them staff."""
        user = request.user
        if not user.is_active:
            return False
        return user.is_superuser or user.groups.filter(name="admin").exists()
