"""`manage.py collect` without some of its extensions, to measure what each costs:

    python bench/collect_without.py versions,topology

Names are the extension modules' (traces, capture, lag, forwarder, versions, topology)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")


def main():
    import django

    django.setup()
    from django.core.management import call_command

    from collector.ingest import extensions

    left_out = set(filter(None, sys.argv[1].split(",")))
    known = {install.__module__.rsplit(".", 1)[1] for install in extensions.INSTALLS}
    if left_out - known:
        sys.exit(f"unknown extension(s) {', '.join(sorted(left_out - known))}; known: {', '.join(sorted(known))}")
    extensions.INSTALLS[:] = [i for i in extensions.INSTALLS if i.__module__.rsplit(".", 1)[1] not in left_out]
    call_command("collect")


if __name__ == "__main__":
    main()
