"""Consumer groups from the lag sampler's `Consumer` rows, for any broker kind. Pure.

The contract a broker's sampler fills in `Consumer.config` (see docs/ARCHITECTURE.md):

- `topics`: the exact topic names (as `Topic.name` of that broker) the consumer reads;
- `instances`: how many clients are connected to it;
- `group`: the service or group name, when it differs from the consumer's `name`;
- `routing`: `"load-balanced"`, `"broadcast"` or `"partitioned"` (Kafka: by key among the
  group's members; every group gets every record), when the broker knows.

JetStream consumers carry none of these: their topics are the stream's subjects their
`filter_subjects` match (all the stream's subjects without a filter), a `deliver_group`
(queue group) names the group and shares the work, and pull requests waiting from
several clients at once (`waiting`) count the instances of a pull consumer.
"""
from dataclasses import dataclass, field

from collector.ingest.subjects import matches

LOAD_BALANCED, BROADCAST, PARTITIONED, SINGLE = "load-balanced", "broadcast", "partitioned", "single"


@dataclass
class Group:
    id: str
    broker: str
    kind: str
    stream: str
    name: str
    service: str  # by convention: the durable, queue-group or group name
    topics: list
    instances: int | None
    routing: str | None  # what the broker says; None: decided from the graph
    lag: int | None = None
    status: str = "ok"
    gone: bool = False
    config: dict = field(default_factory=dict)


def group_of(consumer, topics_of_stream):
    """A Group for one consumer (a dict with broker, kind, stream, name, config, lag, status,
    waiting, gone); `topics_of_stream` lists the broker's known topics in its stream."""
    config = consumer.get("config") or {}
    kind = consumer.get("kind") or "jetstream"
    if "topics" in config:
        topics = [str(topic) for topic in config["topics"] or []]
    else:
        filters = list(config.get("filter_subjects") or [])
        if filters:
            topics = sorted({t for t in topics_of_stream if any(matches(f, t) for f in filters)}
                            | {f for f in filters if "*" not in f and ">" not in f})
        else:
            topics = sorted(topics_of_stream)
    instances = config.get("instances")
    if not isinstance(instances, int) or isinstance(instances, bool):
        instances = None
        waiting = consumer.get("waiting") or 0
        if kind == "jetstream" and config.get("pull") and waiting > 1:
            instances = waiting
    routing = config.get("routing") if config.get("routing") in (LOAD_BALANCED, BROADCAST, PARTITIONED) else None
    if routing is None and kind == "jetstream" and config.get("deliver_group"):
        routing = LOAD_BALANCED
    if routing is None and instances and instances > 1:
        routing = LOAD_BALANCED
    service = str(config.get("group") or config.get("deliver_group") or config.get("durable") or consumer["name"])
    broker = consumer.get("broker") or ""
    return Group(id=f"group:{broker}/{consumer['stream']}/{consumer['name']}", broker=broker, kind=kind,
                 stream=consumer["stream"], name=consumer["name"], service=service, topics=topics,
                 instances=instances, routing=routing, lag=consumer.get("lag"), status=consumer.get("status") or "ok",
                 gone=bool(consumer.get("gone")), config=config)


def routing_of(group, groups_on_topic):
    """How a topic's messages reach this group: shared among its instances (load-balanced),
    split by key among them (partitioned, whatever the number of groups: each group gets every
    record, which `groups_on_topic` shows), a copy for each of several groups (broadcast), or
    the topic's only reader (single)."""
    if group.routing:
        return group.routing
    return BROADCAST if groups_on_topic > 1 else SINGLE
