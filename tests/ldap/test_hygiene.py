"""Issue 12, items 1, 3 and 5 against a real slapd: a connection goes back exactly as it was lent,
or not at all; nobody who asks after ``set_credentials()`` gets the old identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import ldap
import pytest
from ldap.controls.simple import ManageDSAITControl, ProxyAuthzControl

from geventpool.ldap import LDAPPool
from geventpool.testing import FaultProxy
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, service_dn, user_dn

MakePool = Callable[..., LDAPPool]


def whoami(pool: LDAPPool) -> str:
    with pool.connection() as conn:
        return conn.whoami_s()


#: What a careless or hostile borrower leaves behind: each would reach the next borrower.
CHANGES: list[tuple[str, Callable[[Any], None]]] = [
    ("proxied authorization", lambda c: c.set_option(
        ldap.OPT_SERVER_CONTROLS, [ProxyAuthzControl(True, f"dn:{user_dn(3)}".encode())])),
    ("client controls", lambda c: c.set_option(ldap.OPT_CLIENT_CONTROLS, [])),
    ("referrals on", lambda c: c.set_option(ldap.OPT_REFERRALS, 1)),
    ("network timeout", lambda c: c.set_option(ldap.OPT_NETWORK_TIMEOUT, 0.001)),
    ("operation timeout", lambda c: c.set_option(ldap.OPT_TIMEOUT, 0.001)),
    ("size limit", lambda c: c.set_option(ldap.OPT_SIZELIMIT, 1)),
    ("deref", lambda c: c.set_option(ldap.OPT_DEREF, ldap.DEREF_ALWAYS)),
    ("tls require cert", lambda c: c.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_NEVER)),
    ("an option through the attribute", lambda c: setattr(c, "sizelimit", 1)),
    ("an option through the C object", lambda c: c._l.set_option(ldap.OPT_SIZELIMIT, 1)),
    ("a bind through the C object", lambda c: c.result4(c._l.simple_bind(user_dn(3), "userpw", None, None))),
    ("a bind through python-ldap", lambda c: c.simple_bind_s(user_dn(3), "userpw")),
    ("a bind on the pool's own helper", lambda c: c.bind_as(user_dn(3), "userpw")),
]


@pytest.mark.parametrize(("what", "change"), CHANGES, ids=[what for what, _ in CHANGES])
def test_nothing_a_borrower_changes_reaches_the_next_one(
    slapd: Slapd, make_pool: MakePool, what: str, change: Callable[[Any], None]
) -> None:
    pool = make_pool(slapd.uri, size=1)
    with pool.connection() as conn:
        change(conn)
    assert pool.stats()["connections_discarded"] == 1, what  # not put back as it was: not at all
    with pool.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        found = conn.search_s("ou=people,dc=example,dc=com", ldap.SCOPE_ONELEVEL, "(uid=user000*)", ["uid"])
        assert len(found) == 10  # no size limit, no timeout carried over
        assert conn.get_option(ldap.OPT_REFERRALS) == 0
        assert conn.get_option(ldap.OPT_SERVER_CONTROLS) in (None, [])


def test_the_timeout_attribute_is_restored_not_discarded(slapd: Slapd, make_pool: MakePool) -> None:
    pool = make_pool(slapd.uri, size=1)
    with pool.connection() as conn:
        before = conn.timeout
        conn.timeout = 0  # the next borrower's search_s would time out at once
    with pool.connection() as conn:
        assert conn.timeout == before
        assert conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
    assert pool.stats()["connections_discarded"] == 0


def test_per_call_controls_leave_nothing_behind(slapd: Slapd, make_pool: MakePool) -> None:
    pool = make_pool(slapd.uri, size=1)
    with pool.connection() as conn:
        control = ManageDSAITControl(criticality=False)
        assert conn.whoami_s(serverctrls=[control]) == f"dn:{SERVICE_DN}"  # a control for this call only
    assert pool.stats()["connections_discarded"] == 0
    assert whoami(pool) == f"dn:{SERVICE_DN}"


def test_nobody_after_set_credentials_gets_the_old_identity(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    pool = make_pool(private_slapd.uri, size=3)
    held = pool.connection()
    old = held.__enter__()  # in use across the change
    idle_before = [whoami(pool) for _ in range(2)]
    assert idle_before == [f"dn:{SERVICE_DN}"] * 2
    pool.set_credentials(service_dn(2), SERVICE_PW)
    assert whoami(pool) == f"dn:{service_dn(2)}"
    held.__exit__(None, None, None)  # comes back bound as the old identity: discarded
    results = [whoami(pool) for _ in range(5)]
    assert set(results) == {f"dn:{service_dn(2)}"}
    assert old.closed


def test_a_connect_binding_during_set_credentials_is_redone(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    with FaultProxy(upstream=("127.0.0.1", private_slapd.port)) as proxy:
        proxy.set_mode("delay", ms=150)  # every connect and bind takes a while
        pool = make_pool(f"ldap://127.0.0.1:{proxy.port}", size=1, use_tls=False, connect_timeout=5)
        got = gevent.event.AsyncResult()
        gevent.spawn(lambda: got.set(whoami(pool)))  # its connect binds as the old identity...
        gevent.sleep(0.1)
        pool.set_credentials(service_dn(2), SERVICE_PW)  # ...while the credentials change
        assert got.get(timeout=10) == f"dn:{service_dn(2)}"
