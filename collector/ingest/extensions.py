"""What the collector runs beside its broker taps; `manage.py collect` installs them all.
Each capability that needs a part of the collector process offers one `install(collector)`."""
from collector.deadletters import capture as deadletters
from collector.lag import service as lag
from collector.live import forwarder as live
from collector.topology import service as topology
from collector.traces import service as traces
from collector.versions import service as versions

INSTALLS = [traces.install, deadletters.install, lag.install, live.install, versions.install, topology.install]


def install_extensions(collector):
    for install in INSTALLS:
        install(collector)
