"""The three roles are Django groups: viewer reads, operator also acts on messages
(publish, retry, discard), admin also reaches the Django admin."""

ROLES = ("viewer", "operator", "admin")
OPERATOR_PERMISSIONS = ("publish_message", "retry_deadletter")


def sync_roles(sender=None, using="default", **kwargs):
    """Make the groups and give them their permissions; runs after every migrate
    (and after a test database flush), so it must be idempotent."""
    from django.contrib.auth.models import Group, Permission

    groups = {name: Group.objects.using(using).get_or_create(name=name)[0] for name in ROLES}
    ours = Permission.objects.using(using).filter(content_type__app_label="collector")
    viewing = list(ours.filter(codename__startswith="view_").exclude(codename="view_apitoken"))
    acting = list(ours.filter(codename__in=OPERATOR_PERMISSIONS))
    groups["viewer"].permissions.set(viewing)
    groups["operator"].permissions.set(viewing + acting)
    groups["admin"].permissions.set(Permission.objects.using(using).all())


def has_role(user, *names):
    """True when the user is in one of the groups (superusers are in every role)."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name__in=names).exists()
