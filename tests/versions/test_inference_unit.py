"""Unit tests: payload shapes, schemas merged from shapes, drift, the field diff and JSON Schema."""
from collector.versions import inference
from collector.versions.inference import Schema


def schema_of(*payloads):
    schema = Schema()
    for payload in payloads:
        schema.add(inference.paths_of(inference.shape(payload)), 1)
    return schema


def test_unit_a_shape_is_paths_and_types_and_its_fingerprint_ignores_values():
    one = inference.shape({"sku": "mug", "qty": 2, "lines": [{"p": 1.5}], "meta": {"a": None}})
    assert one == (("", "object"), ("lines", "array"), ("lines[]", "object"), ("lines[].p", "number"),
                   ("meta", "object"), ("meta.a", "null"), ("qty", "integer"), ("sku", "string"))
    other = inference.shape({"meta": {"a": None}, "lines": [{"p": 9.0}, {"p": 2.5}], "qty": 7, "sku": "tee"})
    assert inference.fingerprint(one) == inference.fingerprint(other)
    assert inference.fingerprint(one) != inference.fingerprint(inference.shape({"sku": 1}))


def test_unit_schemas_merge_commutatively_from_shape_counts():
    a = inference.paths_of(inference.shape({"item": "mug", "qty": 1}))
    b = inference.paths_of(inference.shape({"item": "mug"}))
    left, right = Schema.from_shapes([(a, 3), (b, 1)]), Schema.from_shapes([(b, 1), (a, 3)])
    assert left.fields == right.fields and left.total == right.total == 4
    assert left.required("item") and not left.required("qty")


def test_unit_drift_is_a_new_type_or_a_missing_required_field_once_established():
    established = schema_of(*[{"item": "mug", "qty": i, "note": None} for i in range(inference.MIN_ESTABLISHED)])
    reasons = inference.drift(inference.paths_of(inference.shape({"item": 42, "qty": 1.5})), established)
    assert {(r["kind"], r["path"]) for r in reasons} == {("type", "item"), ("type", "qty"), ("missing", "note")}
    assert inference.drift(inference.paths_of(inference.shape({"item": "x", "qty": 1, "note": None, "new": 1})),
                           established) == []
    young = schema_of({"item": "mug"})
    assert inference.drift(inference.paths_of(inference.shape({"item": 1})), young) == []


def test_unit_diff_names_added_removed_type_changed_and_required_changes():
    v1 = schema_of({"item": "mug", "qty": 1, "price": 1}, {"item": "tee", "qty": 2, "price": 2, "gift": True})
    v2 = schema_of({"sku": "mug", "currency": "EUR", "qty": 1, "price": 1.5, "gift": True},
                   {"sku": "tee", "currency": "EUR", "price": 2.5, "gift": False})
    changes = {c["path"]: c["change"] for c in inference.diff(v1, v2)}
    assert changes == {"item": "removed", "sku": "added", "currency": "added", "price": "type changed",
                       "qty": "now optional", "gift": "now required"}


def test_unit_json_schema_has_types_properties_items_and_required():
    schema = schema_of({"sku": "mug", "lines": [{"n": 1}]}, {"sku": "tee", "lines": [], "x": None})
    document = inference.json_schema(schema, title="order.created v2")
    assert document["type"] == "object" and document["required"] == ["lines", "sku"]
    assert document["properties"]["lines"]["items"]["properties"]["n"] == {"type": "integer"}
    assert document["properties"]["x"] == {"type": "null"}


def test_unit_value_at_reads_through_arrays():
    payload = {"lines": [{"sku": "mug"}], "a": {"b": 0}}
    assert inference.value_at(payload, "lines[].sku") == "mug"
    assert inference.value_at(payload, "a.b") == 0
    assert inference.value_at(payload, "a.c") is inference.MISSING
