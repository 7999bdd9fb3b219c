from django.contrib import admin, messages

from collector.models import ApiToken, Broker, CollectorHeartbeat, DecodingRule, RuntimeSettings


@admin.register(Broker)
class BrokerAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "display_url", "enabled", "from_env"]
    readonly_fields = ["from_env"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.from_env:
            return ["name", "kind", "url", "enabled", "from_env"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.from_env)

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        # The URL may carry a password: show it back redacted for brokers from the environment.
        if obj is not None and obj.from_env and "adminform" in context:
            context["adminform"].form.initial["url"] = obj.display_url
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)


@admin.register(RuntimeSettings)
class RuntimeSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "read_only", "event_retention_days", "max_payload_bytes"]

    def has_add_permission(self, request):
        return not RuntimeSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DecodingRule)
class DecodingRuleAdmin(admin.ModelAdmin):
    list_display = ["field", "header", "subject_pattern", "enabled"]
    list_filter = ["field", "enabled"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created", "last_used"]
    readonly_fields = ["prefix", "created", "last_used"]
    search_fields = ["name", "user__username"]

    def save_model(self, request, obj, form, change):
        if not change:
            token = obj.issue()
            messages.warning(request, f"API token for {obj.user}: {token} — copy it now, it is not shown again.")
        super().save_model(request, obj, form, change)


@admin.register(CollectorHeartbeat)
class CollectorHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["name", "started", "beat"]
    readonly_fields = ["name", "started", "beat", "counters"]

    def has_add_permission(self, request):
        return False
