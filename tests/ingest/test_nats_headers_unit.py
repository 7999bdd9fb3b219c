"""Unit test: the adapter's header parser gives exactly what nats-py's own parser gives,
for ordinary headers, odd ones and inline status lines (which it hands to nats-py)."""
import asyncio

import nats.aio.client
import pytest

from collector.brokers.nats import Client

BLOCKS = [
    b"NATS/1.0\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    b"NATS/1.0\r\nNats-Msg-Id: a\r\nce-type: order.created\r\nce-id: 7\r\n\r\n",
    b"NATS/1.0\r\nName:Value\r\nTabbed:\tv\r\nEmpty:\r\n:no-name\r\nno colon\r\n\r\n",
    b"NATS/1.0\r\nbad name: x\r\nunit\x1fsep: y\r\n\xffkey: z\r\nutf8: \xc3\xa9t\xc3\xa9 \xff\r\n\r\n",
    b"NATS/1.0\r\nrepeated: 1\r\nrepeated: 2\r\n\r\n",
    b"NATS/1.0\r\n\r\n",
    b"NATS/1.0\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0 100 FlowControl Request\r\n\r\n",
    b"NATS/1.0 404 No Messages\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"",
]


@pytest.mark.parametrize("block", BLOCKS)
def test_unit_headers_parse_as_nats_py_parses_them(block):
    ours = asyncio.run(Client()._process_headers(block))
    theirs = asyncio.run(nats.aio.client.Client()._process_headers(block))
    assert ours == theirs
    assert type(ours) is type(theirs)
