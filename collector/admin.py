from django import forms
from django.contrib import admin, messages

from collector.models import (
    ApiToken,
    Broker,
    CollectorHeartbeat,
    DeadLetter,
    DeadLetterAlert,
    DeadLetterSettings,
    DeadLetterThreshold,
    DecodingRule,
    RuntimeSettings,
    TraceSettings,
)


class BrokerForm(forms.ModelForm):
    """The URL is shown with its password masked; submitting the mask keeps the stored password."""

    class Meta:
        model = Broker
        fields = ["name", "kind", "url", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["url"] = self.instance.display_url

    def clean_url(self):
        url = self.cleaned_data["url"]
        if self.instance.pk and url == self.instance.display_url:
            return self.instance.url
        return url


@admin.register(Broker)
class BrokerAdmin(admin.ModelAdmin):
    form = BrokerForm
    list_display = ["name", "kind", "display_url", "enabled", "from_env"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.from_env:
            # Named by environment variables: shown, never edited here; the URL only masked.
            return ["name", "kind", "display_url", "enabled", "from_env"]
        return ["from_env"]

    def get_fields(self, request, obj=None):
        if obj is not None and obj.from_env:
            return ["name", "kind", "display_url", "enabled", "from_env"]
        return ["name", "kind", "url", "enabled", "from_env"]

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.from_env)


@admin.register(RuntimeSettings)
class RuntimeSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "read_only", "event_retention_days", "max_payload_bytes", "live_rate_cap"]

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


@admin.register(TraceSettings)
class TraceSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not TraceSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DeadLetterSettings)
class DeadLetterSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not DeadLetterSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DeadLetterThreshold)
class DeadLetterThresholdAdmin(admin.ModelAdmin):
    pass


@admin.register(DeadLetterAlert)
class DeadLetterAlertAdmin(admin.ModelAdmin):
    list_display = ["at", "threshold", "count", "notified"]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "subject", "consumer", "reason", "status", "first_seen"]
    search_fields = ["subject", "error"]
    list_filter = ["reason", "status"]
