"""NATS_CREDS: the collector connects to a secured bus with a credentials file (user JWT +
nkey seed) and stores what is published there.

The bus is a real nats-server in operator mode. Its trust chain is minted here with the
`nkeys` package, as `nsc` would: an operator signs itself and the accounts, the account
signs the user. A NATS JWT is base64url(header).base64url(claims).base64url(ed25519
signature of the first two parts by the issuer's nkey), the header
`{"typ": "JWT", "alg": "ed25519-nkey"}`, the claims `iss`, `sub`, `iat`, `jti` plus a
`nats` object with the claim `type` and JWT `version` 2."""
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nats
import nkeys
import pytest

from runner import servers
from tests.conftest import RunningCollector, run_async, wait_until

UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
             "leaf": -1}
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
MESSAGE = b'{"type": "order.created", "version": "1", "timestamp": "2026-11-30T10:00:00Z", "body": {"n": 1}}'


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keypair(prefix):
    """(seed, KeyPair) of a new nkey of the given role (operator, account, user)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return seed.decode(), nkeys.from_seed(bytearray(seed))


def public(pair):
    return pair.public_key.decode()


def mint(subject, name, issuer, nats_claims):
    """A NATS JWT for `subject`, signed by `issuer`."""
    claims = {"iat": int(time.time()), "iss": public(issuer), "name": name, "sub": subject}
    # The id nsc gives a JWT: the hash of its claims without it (base32, no padding).
    digest = hashlib.new("sha512_256", json.dumps(claims, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    claims["nats"] = {**nats_claims, "version": 2}
    signed = f"{b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(issuer.sign(signed.encode()))}"


def creds_file(user_jwt, user_seed):
    """The file `nsc generate creds` writes, which nats-py's user_credentials reads."""
    return (f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n")


@pytest.fixture
def secured_bus(tmp_path):
    """A nats-server (JetStream on) that trusts only users of an account its operator signed;
    yields (url, path of a user's creds file)."""
    _, operator = keypair(nkeys.PREFIX_BYTE_OPERATOR)
    _, account = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    _, system = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, user = keypair(nkeys.PREFIX_BYTE_USER)
    operator_jwt = mint(public(operator), "eventscope-test", operator, {"type": "operator"})
    account_jwt = mint(public(account), "APP", operator, {"type": "account", "limits": {**UNLIMITED, **JETSTREAM}})
    system_jwt = mint(public(system), "SYS", operator, {"type": "account", "limits": UNLIMITED})
    user_jwt = mint(public(user), "collector", account,
                    {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    port = servers.free_port()
    config = tmp_path / "server.conf"
    # JetStream needs a system account in operator mode.
    config.write_text(
        f'listen: "127.0.0.1:{port}"\njetstream: {{store_dir: "{tmp_path / "js"}"}}\n'
        f"operator: {operator_jwt}\nsystem_account: {public(system)}\nresolver: MEMORY\n"
        f"resolver_preload: {{\n  {public(account)}: {account_jwt}\n  {public(system)}: {system_jwt}\n}}\n")
    creds = tmp_path / "collector.creds"
    creds.write_text(creds_file(user_jwt, user_seed))
    creds.chmod(0o600)
    log = open(tmp_path / "nats.log", "wb")
    process = subprocess.Popen([str(Path(sys.executable).parent / "nats-server"), "-c", str(config)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or not servers.port_is_free(port), 10, "nats-server")
        assert process.poll() is None, (tmp_path / "nats.log").read_text()[-2000:]
        yield f"nats://127.0.0.1:{port}", str(creds)
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def publish(url, creds, stream, subject, data):
    async def go():
        nc = await nats.connect(url, user_credentials=creds, allow_reconnect=False)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{subject.split('.')[0]}.>"])
        await js.publish(subject, data)
        await nc.close()

    run_async(go())


def connect_without_creds(url):
    async def go():
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        await nc.close()

    run_async(go())


def test_the_collector_connects_with_nats_creds_to_an_operator_mode_server_and_stores_a_message(
        secured_bus, settings, transactional_db):
    from collector.models import Event

    url, creds = secured_bus
    with pytest.raises(Exception, match="Authorization Violation"):
        connect_without_creds(url)  # the bus really refuses anyone without credentials
    settings.NATS_URL, settings.NATS_CREDS = url, creds
    running = RunningCollector()
    try:
        assert running.collector.adapter.nc.connected_url.port == int(url.rsplit(":", 1)[1])
        publish(url, creds, "SECURED", "secured.order.created", MESSAGE)
        event = wait_until(lambda: Event.objects.filter(stream="SECURED").first(), 20, "the secured message stored")
    finally:
        running.stop()
    assert (event.subject, event.type, bytes(event.raw)) == ("secured.order.created", "order.created", MESSAGE)


def test_the_workers_publish_and_retry_connect_with_nats_creds_too(secured_bus, settings):
    """What the publish task and the retry task run, against the same secured bus."""
    from collector.brokers.nats import publish as publish_one
    from dashboard.deadletters.publisher import Message, Publisher

    url, creds = secured_bus
    settings.NATS_URL, settings.NATS_CREDS = url, creds
    publish(url, creds, "SECURED", "secured.order.created", MESSAGE)
    outcome = run_async(publish_one(url, "secured.order.paid", {"Nats-Msg-Id": "p-1"}, MESSAGE))
    assert outcome == "stored in stream SECURED at sequence 2"
    publisher = Publisher()
    try:
        [sent] = publisher.publish(url, [Message("secured.order.retried", {"Nats-Msg-Id": "r-1"}, MESSAGE)])
    finally:
        publisher.close()
    assert sent == ("sent", "SECURED", 3, "")
