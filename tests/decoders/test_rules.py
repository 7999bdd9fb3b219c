"""Decoding rules: operators' own headers and payload paths, type from subject, and refused rules."""

import pytest

from collector.decoders import Rules, decode


def test_rules_name_custom_headers_and_payload_paths():
    """Operators can point the rules at their own headers and at nested payload fields."""
    rules = Rules(type_headers=["X-Kind"], payload_version_fields=("meta.rev",), producer_headers=("origin",))

    decoded = decode("t", {"x-kind": "invoice.paid", "ORIGIN": "billing"}, b'{"meta": {"rev": 4}}', rules)

    assert (decoded.type, decoded.version, decoded.producer) == ("invoice.paid", "4", "billing")
    assert rules.type_headers == ("X-Kind",)
    assert hash(rules) == hash(Rules(type_headers=("X-Kind",), payload_version_fields=("meta.rev",),
                                     producer_headers=("origin",)))


def test_type_from_subject_rule_names_untyped_messages_after_their_subject():
    rules = Rules(type_from_subject=True)

    decoded = decode("orders.created.v2", None, b"{}", rules)

    assert (decoded.type, decoded.version) == ("orders.created", "2")
    assert decode("orders.created.v2", None, b"{}").type is None


@pytest.mark.parametrize("kwargs, message", [
    ({"type_version_suffix": "(unclosed"}, "type_version_suffix is not a valid regular expression"),
    ({"schema_version": r"/v(\d+)"}, "schema_version must have a named group"),
    ({"max_depth": 0}, "max_depth must be a positive integer"),
    ({"type_headers": "type"}, "type_headers must be a list of header names"),
])
def test_invalid_rules_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rules(**kwargs)
