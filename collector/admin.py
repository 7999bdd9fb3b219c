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
    LagCrossing,
    LagSettings,
    LagThreshold,
    RuntimeSettings,
    TopologySettings,
    TraceSettings,
)
from collector.models.traces import ShareLink


class BrokerForm(forms.ModelForm):
    """The URL is shown with its password masked; submitting the mask keeps the stored password."""

    class Meta:
        model = Broker
        fields = ["name", "kind", "url", "enabled", "exchanges"]

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
        # A RabbitMQ broker's exchange list stays editable: it is runtime configuration.
        if obj is not None and obj.from_env:
            return ["name", "kind", "display_url", "enabled", "exchanges", "from_env"]
        return ["name", "kind", "url", "enabled", "exchanges", "from_env"]

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
    list_display = ["at", "threshold", "count", "delivery", "notified"]
    list_filter = ["delivery"]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "subject", "consumer", "reason", "status", "first_seen"]
    search_fields = ["subject", "error"]
    list_filter = ["reason", "status"]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Issued share links: listed here, revoked one by one, by selection or all at once
    (each revocation on the audit log). Links are made from the trace page, never here."""

    list_display = ["id", "trace_id", "created_by", "created", "expires", "state", "revoked", "revoked_by"]
    list_filter = [("revoked", admin.EmptyFieldListFilter)]
    search_fields = ["trace_id", "created_by__username"]
    readonly_fields = ["trace_id", "trace_start", "trace_end", "created_by", "created", "expires", "revoked",
                       "revoked_by"]
    actions = ["revoke_selected"]
    change_list_template = "admin/collector/sharelink/change_list.html"

    @admin.display(description="state")
    def state(self, obj):
        from django.utils import timezone

        if obj.revoked:
            return "revoked"
        return "active" if obj.ends(TraceSettings.load().share_link_max_days) > timezone.now() else "expired"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a revoked link stays listed: who made it, who revoked it

    @admin.action(description="Revoke the selected share links")
    def revoke_selected(self, request, queryset):
        from collector.traces.sharing import revoke

        count = revoke(queryset, request.user)
        messages.success(request, f"Revoked {count} share link{'s' if count != 1 else ''}.")

    def get_urls(self):
        from django.urls import path

        return [path("revoke-all/", self.admin_site.admin_view(self.revoke_all_view), name="collector_sharelink_revoke_all"),
                *super().get_urls()]

    def revoke_all_view(self, request):
        """GET: how many links are active, and a button; POST: revoke them all."""
        from django.core.exceptions import PermissionDenied
        from django.shortcuts import redirect
        from django.template.response import TemplateResponse

        from collector.traces.sharing import active, revoke

        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            count = revoke(ShareLink.objects.all(), request.user)
            messages.success(request, f"Revoked all {count} share link{'s' if count != 1 else ''}.")
            return redirect("admin:collector_sharelink_changelist")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Revoke every share link",
                   "active": active().count(), "unrevoked": ShareLink.objects.filter(revoked=None).count()}
        return TemplateResponse(request, "admin/collector/sharelink/revoke_all.html", context)


@admin.register(LagSettings)
class LagSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "enabled", "interval_seconds", "raw_retention_hours", "rollup_retention_days"]

    def has_add_permission(self, request):
        return not LagSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LagThreshold)
class LagThresholdAdmin(admin.ModelAdmin):
    list_display = ["__str__", "stream", "consumer", "max_lag", "max_oldest_age", "stalled_after", "growing_after",
                    "enabled"]
    list_filter = ["enabled"]


@admin.register(LagCrossing)
class LagCrossingAdmin(admin.ModelAdmin):
    list_display = ["at", "consumer", "status_from", "status_to", "lag", "notified"]
    readonly_fields = ["consumer", "at", "status_from", "status_to", "lag", "oldest_age", "threshold", "reason",
                       "notified"]

    def has_add_permission(self, request):
        return False


@admin.register(TopologySettings)
class TopologySettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "namespace_pattern", "warn_error_rate", "bad_error_rate", "collapse_above"]

    def has_add_permission(self, request):
        return not TopologySettings.objects.exists()
