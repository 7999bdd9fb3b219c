"""What the collector runs beside its broker taps; `manage.py collect` installs them all."""
from collector import deadletters, tracing

INSTALLS = [tracing.install, deadletters.install]


def install_extensions(collector):
    for install in INSTALLS:
        install(collector)
