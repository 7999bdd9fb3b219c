"""Schemas inferred from payloads. Pure: no database, no I/O.

A payload's *shape* is the set of its field paths with their JSON types (`sku` string,
`lines[].qty` integer); its *fingerprint* a short stable hash of that set. The collector
works out the shape of each payload (one walk) but merges each distinct shape into the
store once per batch, with a count: a version's schema is the union of its shapes, each
field's presence the sum of the counts of the shapes holding it. Everything here merges
commutatively, so shapes counted by several collectors add up to the same schema.

Paths: object keys joined by `.`, array items as `[]`; the root is `""`. Walks stop at
MAX_DEPTH levels, MAX_KEYS keys per object (the rest is one `…` path) and the first
ARRAY_ITEMS items of an array, so one odd payload cannot make a huge shape."""
import hashlib

MAX_DEPTH = 8
MAX_KEYS = 200
OVERFLOW = "…"
MIN_ESTABLISHED = 20  # payloads a version needs before a contradiction of its schema counts as drift

TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null", dict: "object",
         list: "array"}


ARRAY_ITEMS = 20  # items of an array that count for its shape


def signature(value, depth=0):
    """A cheap hashable stand-in for a payload's structure (no path strings, no sorting): a
    scalar's type name, an object's ((key, signature), ...) in its key order, an array's
    ("[]", (distinct item signatures)). Payloads of the same structure share it, so the
    shape is worked out once per signature (see `describe`)."""
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return "object"
        if len(value) > MAX_KEYS:
            items = list(value.items())[:MAX_KEYS] + [(OVERFLOW, {})]
            return tuple([(str(k), signature(v, depth + 1)) for k, v in items])
        return tuple([(k if type(k) is str else str(k), signature(v, depth + 1)) for k, v in value.items()])
    if kind is list:
        if depth >= MAX_DEPTH:
            return "array"
        seen = []
        for item in value[:ARRAY_ITEMS]:
            found = signature(item, depth + 1)
            if found not in seen:
                seen.append(found)
        return ("[]", tuple(seen))
    name = TYPES.get(kind)
    if name is None:  # a bool subclass or anything a decoder might give that JSON has not
        name = "number" if isinstance(value, (int, float)) else "string"
    return name


def _expand(sig, path, found):
    if type(sig) is str:
        found.add((path, sig))
    elif sig and type(sig[0]) is str:  # an array
        found.add((path, "array"))
        for item in sig[1]:
            _expand(item, path + "[]", found)
    else:
        found.add((path, "object"))
        prefix = path + "." if path else ""
        for key, child in sig:
            _expand(child, prefix + key, found)


def shape_of(sig):
    """The shape of a signature: a sorted tuple of (path, type) pairs."""
    found = set()
    _expand(sig, "", found)
    return tuple(sorted(found))


def shape(payload):
    """The shape of a decoded payload: a sorted tuple of (path, type) pairs."""
    return shape_of(signature(payload))


_described = {}


def describe(payload):
    """(fingerprint, shape) of a payload, worked out once per signature in this process."""
    sig = signature(payload)
    found = _described.get(sig)
    if found is None:
        shape_ = shape_of(sig)
        found = (fingerprint(shape_), shape_)
        if len(_described) > 50_000:  # bounded: a bus of ever-new structures must not grow memory
            _described.clear()
        _described[sig] = found
    return found


_fingerprints = {}


def fingerprint(shape_):
    """A stable 16-hex-digit hash of a shape (the same in every collector process)."""
    found = _fingerprints.get(shape_)
    if found is None:
        text = "\n".join(f"{path}\t{kind}" for path, kind in shape_)
        found = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        if len(_fingerprints) > 50_000:  # bounded: a bus of ever-new shapes must not grow memory
            _fingerprints.clear()
        _fingerprints[shape_] = found
    return found


def paths_of(shape_):
    """{path: [types]} of a shape, as stored with it."""
    paths = {}
    for path, kind in shape_:
        paths.setdefault(path, []).append(kind)
    return paths


# --- a version's schema: the union of its shapes ------------------------------------------


class Schema:
    """The fields of one version: for each path, the payloads holding it and how many held
    each type. Built from (paths, count) of the version's shapes."""

    def __init__(self, total=0, fields=None):
        self.total = total
        self.fields = fields or {}  # path -> {"present": n, "types": {type: n}}

    @classmethod
    def from_shapes(cls, shapes):
        schema = cls()
        for paths, count in shapes:
            schema.add(paths, count)
        return schema

    def add(self, paths, count):
        self.total += count
        for path, kinds in paths.items():
            field = self.fields.setdefault(path, {"present": 0, "types": {}})
            field["present"] += count
            for kind in kinds:
                field["types"][kind] = field["types"].get(kind, 0) + count

    def required(self, path):
        field = self.fields.get(path)
        return field is not None and field["present"] >= self.total > 0

    def established(self):
        return self.total >= MIN_ESTABLISHED

    def rows(self):
        """Fields for a page, in path order, the root left out."""
        rows = []
        for path in sorted(self.fields):
            if not path:
                continue
            field = self.fields[path]
            rows.append({"path": path, "types": sorted(field["types"]), "present": field["present"],
                         "share": field["present"] / self.total if self.total else 0.0,
                         "required": field["present"] >= self.total > 0,
                         "depth": path.count(".") + path.count("[]")})
        return rows


def _compatible(kind, known):
    return kind in known or (kind == "integer" and "number" in known)


def drift(paths, schema):
    """Why a payload of shape `paths` contradicts `schema` (the established schema of its
    version), as a list of reasons; empty when it does not, or when the schema is not
    established yet. Contradictions: a field of a type never seen for it; a field every
    earlier payload had, missing (checked outside arrays only, where absence is real)."""
    if not schema.established():
        return []
    reasons = []
    for path, kinds in paths.items():
        field = schema.fields.get(path)
        if field is None:
            continue  # a new field is an addition, not a contradiction
        for kind in kinds:
            if not _compatible(kind, field["types"]):
                known = "/".join(sorted(field["types"]))
                reasons.append({"kind": "type", "path": path, "found": kind, "expected": known,
                                "text": f"{path or 'the payload'} is {kind}, was always {known}"})
    for path, field in schema.fields.items():
        if not path or "[]" in path or path in paths or field["present"] < schema.total:
            continue
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        if parent in paths and "object" in paths[parent]:
            reasons.append({"kind": "missing", "path": path, "found": None, "expected": "required",
                            "text": f"{path} is missing, every earlier payload had it"})
    return reasons


# --- the field diff between two versions -----------------------------------------------------


def diff(old, new):
    """What changed from schema `old` to schema `new`: a list of
    {"path", "change": added|removed|type changed|now optional|now required, "old", "new"}
    in path order (the root left out)."""
    changes = []
    for path in sorted(set(old.fields) | set(new.fields)):
        if not path:
            continue
        before, after = old.fields.get(path), new.fields.get(path)
        if before is None:
            change = "added"
        elif after is None:
            change = "removed"
        elif set(before["types"]) != set(after["types"]):
            change = "type changed"
        elif old.required(path) and not new.required(path):
            change = "now optional"
        elif not old.required(path) and new.required(path):
            change = "now required"
        else:
            continue
        changes.append({
            "path": path, "change": change,
            "old": sorted(before["types"]) if before else None, "new": sorted(after["types"]) if after else None,
            "old_required": old.required(path), "new_required": new.required(path),
        })
    return changes


def value_at(payload, path):
    """The first value at `path` in a payload (through arrays), or a `missing` marker."""
    values = [payload]
    if path:
        for part in path.split("."):
            key, arrays = part, 0
            while key.endswith("[]"):
                key, arrays = key[:-2], arrays + 1
            nxt = []
            for value in values:
                if key == "":
                    nxt.append(value)
                elif isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            for _ in range(arrays):
                nxt = [item for value in nxt if isinstance(value, list) for item in value]
            values = nxt
    return values[0] if values else MISSING


MISSING = object()


# --- JSON Schema --------------------------------------------------------------------------------

_JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


def json_schema(schema, title=None, identifier=None):
    """The inferred schema as JSON Schema (draft 2020-12): types seen per field, and as
    required the fields every payload held."""
    root = _node(schema, "")
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if identifier:
        document["$id"] = identifier
    if title:
        document["title"] = title
    document.update(root)
    document["x-eventscope"] = {"payloads": schema.total}
    return document


def _node(schema, path):
    field = schema.fields.get(path, {"types": {}, "present": 0})
    kinds = [kind for kind in _JSON_TYPES if kind in field["types"]]
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    node = {}
    if kinds:
        node["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "object" in kinds:
        prefix = path + "." if path else ""
        names = set()
        for p in schema.fields:
            if p.startswith(prefix) and p != path:
                rest = p[len(prefix):]
                name = rest.split(".")[0]
                while name.endswith("[]"):
                    name = name[:-2]
                if name and not rest.startswith("[]"):
                    names.add(name)
        properties = {name: _node(schema, prefix + name) for name in sorted(names)}
        node["properties"] = properties
        parent_present = field["present"]
        required = [name for name in sorted(names)
                    if schema.fields.get(prefix + name, {}).get("present", 0) >= parent_present > 0]
        if required:
            node["required"] = required
    if "array" in kinds and path + "[]" in schema.fields:
        node["items"] = _node(schema, path + "[]")
    return node
