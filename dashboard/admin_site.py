from django.contrib import admin


class EventscopeAdminSite(admin.AdminSite):
    site_header = "Eventscope administration"
    site_title = "Eventscope admin"
    index_title = "Brokers, rules, thresholds, users"
    site_url = "/"

    def has_permission(self, request):
        """Only the `admin` role (and superusers) reach the admin; viewers and
        operators are refused even if someone marked them staff."""
        user = request.user
        if not user.is_active:
            return False
        return user.is_superuser or user.groups.filter(name="admin").exists()
