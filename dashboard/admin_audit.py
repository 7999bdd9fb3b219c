"""Every change made in the Django admin reaches the audit log, with the fields changed.

One mechanism for every model the admin shows: `EventscopeAdminSite.register` mixes
`AuditedAdmin` into each ModelAdmin (ours in `collector.admin`, auth's User and Group, and
any app's), so nothing registered can skip it. The ModelAdmin's `log_addition`,
`log_change` and `log_deletions` hooks are where Django records its own LogEntry; we write
an AuditEntry beside it. `save_model` and `save_related` take the before/after snapshots
(many-to-many values are saved in `save_related`, after `save_model`).

A secret's value never reaches the log: password, token, digest, secret and credential
fields show only that they changed, URLs lose their password (`redact_url`), and webhook
URLs (a credential by themselves) keep only scheme and host.
"""
import datetime
import decimal
import uuid
from urllib.parse import urlsplit

from collector.models import AuditEntry
from collector.secrets import redact_url

SECRET_WORDS = ("password", "secret", "token", "digest", "credential")
CHANGED = "(changed)"
SET = "(set)"


def _is_secret(name, extra=()):
    lowered = name.lower()
    return name in extra or any(word in lowered for word in SECRET_WORDS)


def _plain(value):
    """A JSON-friendly rendering of a field value."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def _shown(name, value):
    """What the audit log may show of a non-secret field's value."""
    value = _plain(value)
    if isinstance(value, str) and "://" in value:
        if "webhook" in name.lower():
            parts = urlsplit(value)
            return f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "…"
        return redact_url(value)
    return value


def snapshot(obj):
    """{field name: value} of an object's own fields and many-to-many sets, or {} when
    it is not in the database yet."""
    if obj is None or obj.pk is None:
        return {}
    values = {}
    for field in obj._meta.concrete_fields:
        if field.is_relation:
            values[field.name] = str(getattr(obj, field.name) or "") or None
        else:
            values[field.name] = field.value_from_object(obj)
    for field in obj._meta.many_to_many:
        values[field.name] = sorted(str(item) for item in getattr(obj, field.name).all())
    return values


def diff(before, after, secret_fields=(), unchanged=()):
    """{field: {"from": .., "to": ..}} for fields that differ; secrets say only that they
    changed, many-to-many fields what was added and removed. `unchanged` names form
    fields the form found unchanged: their stored form may still differ (a time saved
    back without its microseconds), which is no change anyone made."""
    changes = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new or name in unchanged:
            continue
        if _is_secret(name, secret_fields):
            changes[name] = CHANGED if old else SET
        elif isinstance(old, list) or isinstance(new, list):
            old, new = set(old or []), set(new or [])
            changes[name] = {"added": sorted(new - old), "removed": sorted(old - new)}
        else:
            changes[name] = {"from": _shown(name, old), "to": _shown(name, new)}
    return changes


def _target(obj):
    return f"{obj._meta.label_lower} {obj.pk}: {obj}"[:500]


class AuditedAdmin:
    """Mixed into every ModelAdmin by the admin site. `audit_secret_fields` names fields
    beyond the usual secret words whose values must not be logged."""

    audit_secret_fields = ()

    def save_model(self, request, obj, form, change):
        stored = type(obj)._default_manager.filter(pk=obj.pk).first() if change and obj.pk else None
        request._audit_before = snapshot(stored)
        request._audit_unchanged = set(form.fields) - set(form.changed_data)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        request._audit_after = snapshot(form.instance)

    def _write(self, request, action, obj, changes, result):
        AuditEntry.objects.create(user=request.user if request.user.is_authenticated else None, action=action,
                                  target=_target(obj),
                                  detail={"model": obj._meta.label_lower, "id": _plain(obj.pk), "changes": changes},
                                  result=result)

    def _changes(self, request, obj, message):
        before = getattr(request, "_audit_before", None)
        after = getattr(request, "_audit_after", None)
        request._audit_before = request._audit_after = None
        if after is not None:
            return diff(before or {}, after, self.audit_secret_fields, getattr(request, "_audit_unchanged", ()))
        # A change made without the model form (the password form): the changed field
        # names Django put in its message, values never shown.
        names = []
        for part in message if isinstance(message, list) else []:
            names += part.get("changed", {}).get("fields", [])
        return {name: CHANGED for name in names}

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        changes = self._changes(request, obj, message)
        self._write(request, "admin add", obj, changes, "added")
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        changes = self._changes(request, obj, message)
        self._write(request, "admin change", obj, changes, "changed " + ", ".join(changes) if changes else "saved unchanged")
        return entry

    def log_deletions(self, request, queryset):
        entries = super().log_deletions(request, queryset)
        for obj in queryset:
            fields = {name: _shown(name, value) for name, value in snapshot(obj).items()
                      if not _is_secret(name, self.audit_secret_fields)}
            self._write(request, "admin delete", obj, {"deleted": fields}, "deleted")
        return entries
