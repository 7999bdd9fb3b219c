from types import SimpleNamespace as Rule

from collector import decoders
from collector.ingest.rulebook import RuleBook


def test_an_admin_rule_names_the_version_header_for_its_subjects():
    book = RuleBook([Rule(field="version", header="X-Schema-Rev", subject_pattern="billing.>")])
    decoded = decoders.decode("billing.invoice", {"X-Schema-Rev": "7"}, b'{"a": 1}', book.for_subject("billing.invoice"))
    assert decoded.version == "7"
    other = decoders.decode("orders.new", {"X-Schema-Rev": "7"}, b'{"a": 1}', book.for_subject("orders.new"))
    assert other.version is None


def test_rules_for_every_subject_apply_under_more_specific_ones_too():
    book = RuleBook([Rule(field="producer", header="svc", subject_pattern=">"),
                     Rule(field="key", header="order-no", subject_pattern="orders.*")])
    decoded = decoders.decode("orders.new", {"svc": "shop", "order-no": "42"}, b"{}", book.for_subject("orders.new"))
    assert (decoded.producer, decoded.key) == ("shop", "42")


def test_without_rules_the_built_in_conventions_apply():
    assert RuleBook().for_subject("anything") is decoders.DEFAULT_RULES
