"""What the collector runs beside its broker taps; `manage.py collect` installs them all."""
from collector import tracing

INSTALLS = [tracing.install]


def install_extensions(collector):
    for install in INSTALLS:
        install(collector)
