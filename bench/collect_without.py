"""`manage.py collect` without some of its extensions, to measure what each costs:

    python bench/collect_without.py versions,topology

Names are the capabilities' (traces, deadletters, lag, live, versions, topology)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")


def _name(install):
    return install.__module__.split(".")[1]  # collector.<capability>.<module>


def main():
    import django

    django.setup()
    from django.core.management import call_command

    from collector.ingest import extensions

    left_out = set(filter(None, sys.argv[1].split(",")))
    known = {_name(install) for install in extensions.INSTALLS}
    if left_out - known:
        sys.exit(f"unknown extension(s) {', '.join(sorted(left_out - known))}; known: {', '.join(sorted(known))}")
    extensions.INSTALLS[:] = [i for i in extensions.INSTALLS if _name(i) not in left_out]
    call_command("collect")


if __name__ == "__main__":
    main()
