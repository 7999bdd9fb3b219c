"""What the collector reads from the database to run: the brokers (those the environment
names — NATS_URL, RABBITMQ_URL, KAFKA_BOOTSTRAP_SERVERS — mirrored read-only into the admin, and those added there), the decoding rules, the subject scope, the payload cap and the
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


# (row name, kind, setting): brokers named by environment variables, mirrored into the admin.
ENV_BROKERS = [("nats", "nats", "NATS_URL"), ("rabbitmq", "rabbitmq", "RABBITMQ_URL"),
               ("kafka", "kafka", "KAFKA_BOOTSTRAP_SERVERS")]


def load_brokers():
    """Every enabled broker, the NATS one first: those the environment names (an unset
    variable disables its row) and those added in the admin. Read once at start: a broker
    added or changed in the admin is tapped from the collector's next start."""
    from collector.models import Broker

    load_configuration()  # mirrors NATS_URL
    for name, kind, setting in ENV_BROKERS[1:]:
        url = getattr(settings, setting, None)
        if url and kind == "kafka":
            url = f"kafka://{url}"  # the setting is a bare host:port list
        if url:
            Broker.objects.update_or_create(name=name, defaults={"kind": kind, "url": url, "from_env": True,
                                                                 "enabled": True})
        else:
            Broker.objects.filter(name=name, from_env=True).update(enabled=False)
    brokers = list(Broker.objects.filter(enabled=True).order_by("id"))
    return sorted(brokers, key=lambda broker: (broker.name != "nats", broker.id))


def event_retention_days():
    from collector.models import RuntimeSettings

    return RuntimeSettings.load().event_retention_days

