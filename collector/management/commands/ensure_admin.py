import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Make sure an admin login exists: DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD when set, "
            "else a generated password printed once.")

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is None and password is None and User.objects.filter(is_superuser=True).exists():
            return  # an admin made earlier (its password was shown then)
        generated = False
        if user is None:
            if password is None:
                password, generated = secrets.token_urlsafe(12), True
            user = User.objects.create_superuser(username=username, email="", password=password)
        elif password is not None and not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name="admin")[0])
        if generated:
            self.stdout.write(
                f"\nEventscope: admin login created — username: {username}  password: {password}\n"
                "  (shown once; change it with: python manage.py changepassword admin)\n"
            )
