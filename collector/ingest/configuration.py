"""What the collector reads from the database to run: the broker NATS_URL names (mirrored
read-only into the admin), the decoding rules, the subject scope, the payload cap and the
event retention. Operators edit them in the admin while it runs; the heartbeat rereads them."""
from django.conf import settings

from collector.ingest.rulebook import RuleBook
from collector.ingest.subjects import Scope, parse_patterns


def load_configuration():
    """The broker from NATS_URL (mirrored read-only into the admin) and the runtime settings."""
    from collector.models import Broker, DecodingRule, RuntimeSettings

    broker, _ = Broker.objects.update_or_create(
        name="nats", defaults={"kind": "nats", "url": settings.NATS_URL, "from_env": True, "enabled": True}
    )
    runtime = RuntimeSettings.load()
    scope = Scope(parse_patterns(runtime.include_subjects), parse_patterns(runtime.exclude_subjects))
    rules = RuleBook(DecodingRule.objects.filter(enabled=True))
    return broker, rules, scope, runtime.max_payload_bytes


def event_retention_days():
    from collector.models import RuntimeSettings

    return RuntimeSettings.load().event_retention_days


def kafka_broker():
    """The cluster KAFKA_BOOTSTRAP_SERVERS names, mirrored read-only into the admin as the
    broker `kafka`; None when it is not set."""
    from collector.models import Broker

    if not settings.KAFKA_BOOTSTRAP_SERVERS:
        return None
    broker, _ = Broker.objects.update_or_create(
        name="kafka", defaults={"kind": "kafka", "url": f"kafka://{settings.KAFKA_BOOTSTRAP_SERVERS}",
                                "from_env": True, "enabled": True})
    return broker
