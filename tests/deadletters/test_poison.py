"""One bad dead letter never stops the collector: bad header values become notes, a letter
the database refuses is stored with a note, and the messages around it go on."""
import json
from datetime import datetime, timezone

import nats
import pytest

from collector.deadletters.rules import DlqRules
from collector.events.writer import EventRow
from collector.models import DeadLetter, Event
from tests.conftest import nats_publish, run_async, wait_until
from tests.deadletters.conftest import make_stream, unique

RULES = DlqRules([">.dlq"], ["X-Original-Topic"], ["X-Error"], ["X-Attempts", "X-Retry-Count"])


def dlq_row(headers):
    now = datetime.now(timezone.utc)
    return EventRow(ts=now, received_at=now, broker_id=1, subject="orders.dlq", stream="S", seq=7,
                    headers=headers, raw=b"{}", size=2, truncated=False, sha256=None, format="raw")


@pytest.mark.parametrize("value, note", [
    ("²", "header X-Attempts: '²' is not a whole number of attempts"),
    ("99999999999", "header X-Attempts: '99999999999' attempts is more than can be stored (at most 2147483647)"),
    ("9" * 5000, "attempts is more than can be stored"),
    ("-1", "header X-Attempts: '-1' is not a whole number of attempts"),
    ("3.5", "is not a whole number"),
    ("٣", "header X-Attempts: '٣' is not a whole number of attempts"),
])
def test_unit_a_bad_attempts_header_becomes_a_note_and_no_delivery_count(value, note):
    """Values that str.isdigit() takes but int() or the integer column refuse, and other
    non-numbers, leave the delivery count empty and say why in the note."""
    letter = RULES.letter_for(dlq_row({"X-Attempts": value, "X-Error": "boom"}), None)
    assert letter.deliveries is None
    assert note in letter.note
    assert (letter.subject, letter.error) == ("orders", "boom")


def test_unit_good_attempts_headers_are_read_as_before():
    """ASCII digits (spaces around them allowed) up to the column's limit are the count;
    an unknown reason header is kept as a note."""
    assert RULES.letter_for(dlq_row({"x-attempts": " 7 "}), None).deliveries == 7
    assert RULES.letter_for(dlq_row({"X-Retry-Count": "2147483647"}), None).deliveries == 2147483647
    odd = RULES.letter_for(dlq_row({"X-Attempts": "3", "X-Dead-Letter-Reason": "gremlins"}), None)
    assert odd.deliveries == 3 and odd.reason == "dlq_subject"
    assert odd.note == "header X-Dead-Letter-Reason: 'gremlins' is not a known reason"


def ack_floor(url, stream):
    async def go():
        nc = await nats.connect(url)
        info = await nc.jsm().consumer_info(stream, "eventscope")
        await nc.close()
        return info.ack_floor.stream_seq

    return run_async(go())


def test_a_poison_dead_letter_is_stored_with_a_note_and_the_batch_goes_on(collector, nats_url):
    """`X-Attempts: ²` and `X-Attempts: 99999999999` once jammed the after-commit hook forever
    (and the valid dead letter published just before them never appeared). Each is now a dead
    letter whose note names the bad value, its neighbours are stored, and every message is acked."""
    stream = unique("POI")
    base = stream.lower()
    make_stream(nats_url, stream, [f"{base}.>"])
    collector.wait_until_observing(stream)
    subject = f"{base}.orders.dlq"
    nats_publish(nats_url, [
        (subject, b'{"n": 1}', {"X-Attempts": "3", "X-Error": "before"}),
        (subject, b'{"n": 2}', {"X-Attempts": "²", "X-Error": "superscript"}),
        (subject, b'{"n": 3}', {"X-Attempts": "99999999999", "X-Error": "overflow"}),
        (subject, b'{"n": 4}', {"X-Attempts": "1", "X-Error": "after"}),
    ], stream=stream, subjects=[f"{base}.>"])
    wait_until(lambda: DeadLetter.objects.filter(stream=stream).count() == 4, 20, "four dead letters")
    letters = {letter.error: letter for letter in DeadLetter.objects.filter(stream=stream)}
    assert (letters["before"].deliveries, letters["before"].note) == (3, "")
    assert (letters["after"].deliveries, letters["after"].note) == (1, "")
    assert letters["superscript"].deliveries is None and "'²'" in letters["superscript"].note
    assert letters["overflow"].deliveries is None and "'99999999999'" in letters["overflow"].note
    for letter in letters.values():
        assert letter.subject == f"{base}.orders" and letter.event_id is not None
        assert Event.objects.get(id=letter.event_id).seq == letter.stream_seq
    wait_until(lambda: ack_floor(nats_url, stream) == 4, 10, "every message acked")


def publish_advisory(url, stream, consumer, advisory):
    async def go():
        nc = await nats.connect(url)
        await nc.publish(f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}",
                         json.dumps(advisory).encode())
        await nc.flush()
        await nc.close()

    run_async(go())


def test_an_advisory_the_database_refuses_is_stored_with_a_note_and_later_ones_still_arrive(collector, nats_url):
    """An advisory whose delivery count overflows the column (anyone may publish on the advisory
    subjects) once retried forever and held back every advisory after it. The database's refusal
    is now a note on a dead letter stored without the refused fields, and the next advisory is
    stored as usual."""
    stream = unique("ADV")
    wait_until(lambda: "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>" in
               {sub.subject for sub in collector.collector.adapter.nc._subs.values()}, 10, "the advisory subscription")
    make_stream(nats_url, stream, [f"{stream.lower()}.>"])
    nats_publish(nats_url, [(f"{stream.lower()}.a", b'{"n": 1}', None), (f"{stream.lower()}.b", b'{"n": 2}', None)],
                 stream=stream, subjects=[f"{stream.lower()}.>"])
    publish_advisory(nats_url, stream, "billing", {"stream": stream, "consumer": "billing", "stream_seq": 1,
                                                   "deliveries": 99999999999})
    publish_advisory(nats_url, stream, "billing", {"stream": stream, "consumer": "billing", "stream_seq": 2,
                                                   "deliveries": 4})
    wait_until(lambda: DeadLetter.objects.filter(stream=stream).count() == 2, 20, "both dead letters")
    refused = DeadLetter.objects.get(stream=stream, stream_seq=1)
    assert refused.deliveries is None and "refused as received" in refused.note
    assert "out of range" in refused.note
    assert bytes(refused.raw) == b'{"n": 1}' and refused.subject == f"{stream.lower()}.a"
    fine = DeadLetter.objects.get(stream=stream, stream_seq=2)
    assert (fine.deliveries, fine.note, bytes(fine.raw)) == (4, "", b'{"n": 2}')


def test_unit_dead_letters_are_stored_each_alone_so_a_refused_one_holds_back_none(broker):
    """store_letters gives each letter its own transaction: the refused one is stored again
    with a note, the others as they are."""
    from django.utils import timezone as dj_timezone

    from collector.deadletters.capture import store_letters

    now = dj_timezone.now()

    def make(key, deliveries):
        return DeadLetter(key=key, broker=broker, reason="max_deliveries", subject="s", raw=b"x", size=1,
                          headers={"X-Customer": "7"}, deliveries=deliveries, first_seen=now, last_seen=now)

    keys = [unique("k:") for _ in range(3)]
    new = store_letters([make(keys[0], 1), make(keys[1], 2**40), make(keys[2], 3)])
    assert [letter.key for letter in new] == keys
    stored = {letter.key: letter for letter in DeadLetter.objects.filter(key__in=keys)}
    assert stored[keys[0]].deliveries == 1 and stored[keys[2]].deliveries == 3
    assert stored[keys[1]].deliveries is None and stored[keys[1]].headers is None
    assert "integer out of range" in stored[keys[1]].note
