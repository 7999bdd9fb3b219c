"""The store, one module per capability. Every model keeps the app label `collector` and its
table name; this package re-exports them all so `collector.models.X` works from anywhere.
Imports: Django and `collector.secrets` only."""
from collector.models.access import *  # noqa: F401,F403
from collector.models.audit import *  # noqa: F401,F403
from collector.models.brokers import *  # noqa: F401,F403
from collector.models.deadletters import *  # noqa: F401,F403
from collector.models.events import *  # noqa: F401,F403
from collector.models.lag import *  # noqa: F401,F403
from collector.models.traces import *  # noqa: F401,F403
from collector.models.versions import *  # noqa: F401,F403
from collector.models.topology import *  # noqa: F401,F403
