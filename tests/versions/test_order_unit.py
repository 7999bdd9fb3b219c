"""Unit tests: versions sort as versions, and the decoders find semantic versions."""
import pytest

from collector.decoders import decode
from collector.versions.order import label, newest, sort_versions, version_key


def test_unit_versions_sort_as_versions_not_as_text():
    """1.10.0 after 1.9.0, 2 after 1.9, unversioned first, a leading v ignored."""
    assert sort_versions(["1.10.0", "2", "1.9.0", "", "1.9", "v1.2", "10", "1.2.3"]) == [
        "", "v1.2", "1.2.3", "1.9", "1.9.0", "1.10.0", "2", "10"]


def test_unit_missing_parts_are_zero_and_text_sorts_after_its_numbers():
    """1 == 1.0 == 1.0.0; 1.2.0-rc1 after 1.2.0 and before 1.2.1; text compared as text."""
    assert version_key("1") == version_key("1.0") == version_key("1.0.0")
    assert sort_versions(["1.2.1", "1.2.0-rc1", "1.2.0"]) == ["1.2.0", "1.2.0-rc1", "1.2.1"]
    assert sort_versions(["beta", "alpha"]) == ["alpha", "beta"]


def test_unit_newest_ignores_the_unversioned_group():
    assert newest(["", "1.9", "1.10"]) == "1.10"
    assert newest([""]) == ""
    assert (label(""), label("2")) == ("unversioned", "v2")


@pytest.mark.parametrize(("headers", "payload", "expected"), [
    ({}, b'{"type": "user.created.v1.2.0", "version": null}', ("user.created", "1.2.0")),
    ({}, b'{"type": "user.created_v2.10", "id": 1}', ("user.created", "2.10")),
    ({"dataschema": "https://schemas.test/user/created/v1.2.0.json"}, b'{"type": "user.created"}',
     ("user.created", "1.2.0")),
    ({"schema": "https://schemas.test/user/created/v3/schema.json"}, b'{"type": "user.created"}',
     ("user.created", "3")),
])
def test_unit_decoders_find_semantic_versions_in_type_suffixes_and_schema_urls(headers, payload, expected):
    decoded = decode("users", headers, payload)
    assert (decoded.type, decoded.version) == expected
