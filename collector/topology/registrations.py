"""Registration events on `service.events`: a service (or one of its instances) announcing
itself or leaving. Pure: a stored message in, registrations or a reason out.

Accepted payloads (a JSON object, alone or as the body of an envelope the decoders opened):

- Go Micro's registry result: `{"action": "create|update|delete", "service": {"name", "version",
  "nodes": [{"id", "address"}, ...]}}`;
- a flat announcement: `{"name", "version", "action"?, "instances"?: N, "node"?|"id"?, "address"?}`.

`delete` / `deregister` mark the nodes gone; anything else announces them alive.
"""
import json
from dataclasses import dataclass

SUBJECT = "service.events"
GONE_ACTIONS = {"delete", "deregister", "deregistered", "stop", "stopped"}


class BadRegistration(ValueError):
    pass


@dataclass(frozen=True)
class Registration:
    service: str
    version: str
    node: str
    address: str
    instances: int
    gone: bool


def _payload(payload, raw):
    if isinstance(payload, dict):
        return payload
    try:
        value = json.loads(bytes(raw or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRegistration("not a JSON object") from None
    if not isinstance(value, dict):
        raise BadRegistration("not a JSON object")
    # An envelope whose body the decoders left encoded.
    body = value.get("body") if isinstance(value.get("body"), dict) else None
    return body if body is not None and ("name" in body or "service" in body) else value


def _text(value, what):
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise BadRegistration(f"{what} is not a string")
    return str(value)


def parse(payload, raw=None):
    """[Registration] for one message on `service.events`; BadRegistration says why not."""
    data = _payload(payload, raw)
    action = _text(data.get("action") or data.get("type") or "", "action").lower()
    gone = action.rsplit(".", 1)[-1] in GONE_ACTIONS
    service = data.get("service") if isinstance(data.get("service"), dict) else data
    name = _text(service.get("name"), "name").strip()
    if not name:
        raise BadRegistration("no service name")
    version = _text(service.get("version"), "version")
    nodes = service.get("nodes")
    if nodes is not None:
        if not isinstance(nodes, list) or not all(isinstance(node, dict) for node in nodes):
            raise BadRegistration("nodes is not a list of objects")
        if nodes:
            return [Registration(name, version, _text(node.get("id"), "node id"), _text(node.get("address"), "address"),
                                 1, gone) for node in nodes]
    instances = service.get("instances", 1)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise BadRegistration("instances is not a whole number")
    node = _text(service.get("node") or service.get("id"), "node")
    return [Registration(name, version, node, _text(service.get("address"), "address"), instances, gone)]
