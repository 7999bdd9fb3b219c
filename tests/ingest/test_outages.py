"""An outage is waited out, a bad row is not: the collector's write path and its
after-commit hooks tell the two apart from the errors the real database raises."""
import secrets

import psycopg
import pytest
from django.db import connection

from collector.db import conninfo, is_outage
from collector.partitions import no_partition
from tests.conftest import run_async


def raised(sql, *params, before=()):
    """The psycopg error the real database raises for `sql` (after the statements `before`)."""
    with psycopg.connect(conninfo()) as conn:
        for statement in before:
            conn.execute(statement)
        try:
            conn.execute(sql, params)
        except psycopg.Error as error:
            return error
    raise AssertionError(f"{sql} raised nothing")


def django_raised(sql):
    """The Django error (wrapping psycopg's) the real database raises for `sql`."""
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    except DatabaseError as error:
        return error
    raise AssertionError(f"{sql} raised nothing")


def unreachable():
    """The error of a connection to a port where no database listens."""
    from runner.servers import free_port

    try:
        psycopg.connect(f"host=127.0.0.1 port={free_port(25000)} dbname=x connect_timeout=2")
    except psycopg.Error as error:
        return error
    raise AssertionError("a database answered")


def terminated():
    """The error a session gets when an administrator (or a restart) ends it."""
    with psycopg.connect(conninfo(), autocommit=True) as victim, psycopg.connect(conninfo(), autocommit=True) as admin:
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        try:
            victim.execute("SELECT 1")
        except psycopg.Error as error:
            return error
    raise AssertionError("the session survived")


def too_large_for_its_index():
    """An index row too large: a program limit, raised as OperationalError but caused by one row."""
    error = raised("INSERT INTO big VALUES (%s)", secrets.token_hex(6000),
                   before=["CREATE TEMP TABLE big (t text)", "CREATE INDEX ON big (t)"])
    assert isinstance(error, psycopg.errors.ProgramLimitExceeded), error
    return error


@pytest.mark.django_db
def test_unit_a_refused_row_is_not_an_outage():
    """Out-of-range numbers, a lost partition, an index row over the limit, NUL in text:
    waiting cures none of them."""
    refusals = [
        raised("SELECT 99999999999::int4"),
        raised("SELECT convert_from('\\x00'::bytea, 'UTF8')"),
        raised("INSERT INTO p VALUES (now())", before=["CREATE TEMP TABLE p (ts timestamptz) PARTITION BY RANGE (ts)"]),
        too_large_for_its_index(),
        django_raised("SELECT 99999999999::int4"),
    ]
    for error in refusals:
        assert not is_outage(error), f"{type(error).__name__}: {error}"
    assert no_partition(refusals[2]) and not no_partition(refusals[0])


@pytest.mark.django_db
def test_unit_a_lost_database_or_a_wrong_schema_is_waited_out():
    """No server, a terminated session: the database will be back, the batch waits for it. A
    table missing or a privilege revoked blames no row either: nothing is acked (so nothing is
    dropped) until an operator fixes it. A Python error is no outage."""
    for error in (unreachable(), terminated(), raised("SELECT * FROM no_such_table"),
                  django_raised("SELECT * FROM no_such_table")):
        assert is_outage(error), f"{type(error).__name__}: {error}"
    assert not is_outage(ValueError("invalid literal for int() with base 10: '²'"))


def test_unit_an_after_commit_hook_waits_out_an_outage_and_goes_on_past_a_bad_row(transactional_db):
    """The collector retries a hook that met an outage (nothing is acked meanwhile) and goes on
    when the hook failed for any other reason, instead of retrying it forever."""
    from collector.ingest.service import Collector, load_configuration

    outage, bad_row = terminated(), raised("SELECT 99999999999::int4")
    broker = load_configuration()[0]
    calls = []

    async def flaky(collector, rows):
        calls.append("flaky")
        if calls.count("flaky") <= 2:
            raise outage
        return "stored"

    async def poisoned(collector, rows):
        calls.append("poisoned")
        raise bad_row

    async def go():
        collector = Collector(broker)
        return await collector._run_hook(flaky, []), await collector._run_hook(poisoned, [])

    assert run_async(go()) == ("stored", None)
    assert calls == ["flaky", "flaky", "flaky", "poisoned"]
