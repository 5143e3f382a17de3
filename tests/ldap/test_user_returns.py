"""The returns of ``authenticate()`` and ``connection(dn, password)`` connections (core's inlined path).

Their pools (the auth pool, the users' pool) hand clean returns to the core's
inlined path: the auth pool because no caller code ever holds its connections,
the users' pool because the lease it lends checks the connection itself first
(the rules of ``LDAPHooks._reset``).  These tests hold those returns to the
same promises as the core's slow path: an interrupted or failed bind discards
the connection, whatever a borrower changed never reaches the next one, a stale
lease never touches a connection lent since, and the per-key count that spares
a search of the idle connections follows them exactly.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import gevent
import ldap
import pytest

from geventpool.ldap import LDAPPool
from geventpool.ldap.credentials import Credentials
from geventpool.testing.slapd import USER_PW, Slapd, user_dn

MakePool = Callable[..., LDAPPool]


def _auth_conns(cm: LDAPPool) -> list[object]:
    assert cm._auth is not None
    return [slot.conn for slot in cm._auth.snapshot().slots]


def test_authenticate_interrupted_during_the_bind_discards_its_connection(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(private_slapd.uri, auth_size=1, timeout=5)
    assert cm.authenticate(user_dn(1), USER_PW)
    [first] = _auth_conns(cm)
    private_slapd.pause()
    try:
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.1):
                cm.authenticate(user_dn(2), USER_PW)
        job = gevent.spawn(cm.authenticate, user_dn(3), USER_PW)
        gevent.sleep(0.05)
        job.kill()
    finally:
        private_slapd.resume()
    assert first.closed  # type: ignore[attr-defined]
    assert cm._auth is not None and cm._auth.snapshot().in_use == 0
    assert cm.authenticate(user_dn(1), USER_PW) is True
    assert cm.authenticate(user_dn(1), "wrong") is False
    assert cm.authenticate(user_dn(4), USER_PW) is True


def test_authenticate_on_a_connection_the_server_dropped_discards_it(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(private_slapd.uri, auth_size=1, timeout=5)
    assert cm.authenticate(user_dn(1), USER_PW)
    [first] = _auth_conns(cm)
    private_slapd.restart(graceful=False)
    try:
        assert cm.authenticate(user_dn(2), USER_PW) is True  # (a new connection, if the first was checked)
    except ldap.SERVER_DOWN:
        pass  # lost during the bind: the caller is told, the connection is not kept
    assert first.closed  # type: ignore[attr-defined]
    assert cm.authenticate(user_dn(2), USER_PW) is True
    assert cm.authenticate(user_dn(2), "wrong") is False


def test_a_refused_password_leaves_the_auth_connection_usable(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, auth_size=1)
    assert cm.authenticate(user_dn(1), "wrong") is False
    [first] = _auth_conns(cm)
    assert cm.authenticate(user_dn(1), USER_PW) is True
    assert _auth_conns(cm) == [first] and not first.closed  # type: ignore[attr-defined]
    with cm._auth.get() as conn:  # type: ignore[union-attr]
        assert conn.whoami_s() == f"dn:{user_dn(1)}"  # the last check's bind, not a stale one


def test_a_per_user_return_restores_the_timeout_attribute(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, user_size=1, timeout=9)
    with cm.connection(user_dn(1), USER_PW) as conn:
        first = conn
        conn.timeout = 0.5
    with cm.connection(user_dn(2), USER_PW) as conn:
        assert conn is first and conn.timeout == 9
        assert conn.whoami_s() == f"dn:{user_dn(2)}"


@pytest.mark.parametrize("change", ["set_option", "bind", "broken", "unbind"])
def test_whatever_a_per_user_borrower_changed_discards_the_connection(
    slapd: Slapd, make_pool: MakePool, change: str
) -> None:
    cm = make_pool(slapd.uri, user_size=1)
    with cm.connection(user_dn(1), USER_PW) as conn:
        first = conn
        if change == "set_option":
            conn.set_option(ldap.OPT_SIZELIMIT, 1)
        elif change == "bind":
            conn._l.simple_bind(user_dn(2), USER_PW)  # through the C object: noted all the same
        elif change == "broken":
            conn.mark_broken()
        else:
            conn.unbind_s()
    assert first.closed
    with cm.connection(user_dn(1), USER_PW) as conn:
        assert conn is not first
        assert conn.get_option(ldap.OPT_SIZELIMIT) == 0 and conn.whoami_s() == f"dn:{user_dn(1)}"
    assert cm._users is not None and cm._users.snapshot().in_use == 0


def test_a_stale_per_user_lease_never_touches_the_connection_lent_since(
    slapd: Slapd, make_pool: MakePool
) -> None:
    """A lease returned twice must not mark the next borrower's connection clean (its change
    would then reach the borrower after it)."""
    cm = make_pool(slapd.uri, user_size=1)
    lease = cm.connection(user_dn(1), USER_PW)
    with lease as conn:
        first = conn
    assert not lease.active
    with cm.connection(user_dn(2), USER_PW) as conn:
        assert conn is first
        conn.set_option(ldap.OPT_SIZELIMIT, 1)
        with pytest.raises(ValueError):
            lease.release()
        with pytest.raises(ValueError):
            lease.__exit__(None, None, None)
        assert conn.changed is not None
    assert first.closed
    with cm.connection(user_dn(3), USER_PW) as conn:
        assert conn.get_option(ldap.OPT_SIZELIMIT) == 0


def test_an_error_in_a_per_user_block_still_applies_the_discard_rule(
    slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(slapd.uri, user_size=1)
    with pytest.raises(ldap.NO_SUCH_OBJECT):
        with cm.connection(user_dn(1), USER_PW) as conn:
            first = conn
            conn.search_s("uid=nobody,ou=people,dc=example,dc=com", ldap.SCOPE_BASE)
    assert not first.closed  # an LDAP result, not a lost connection: kept
    with pytest.raises(ldap.SERVER_DOWN):
        with cm.connection(user_dn(1), USER_PW) as conn:
            assert conn is first  # bound as user 1 already: lent with no bind
            raise ldap.SERVER_DOWN({"desc": "simulated"})
    assert first.closed


def _counts(cm: LDAPPool) -> tuple[dict[object, int], Counter[object]]:
    users = cm._users
    assert users is not None
    found = Counter(
        key for slot in users.snapshot().slots
        if (key := slot.conn.__dict__.get("_identity_key")) is not None
    )
    return dict(users._bound), found


def test_the_per_key_count_follows_the_connections(private_slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(private_slapd.uri, user_size=3)
    for n in range(12):
        with cm.connection(user_dn(n % 5), USER_PW) as conn:
            assert conn.whoami_s() == f"dn:{user_dn(n % 5)}"
    bound, found = _counts(cm)
    assert bound == found and sum(found.values()) == 3
    with pytest.raises(ldap.INVALID_CREDENTIALS):  # the connection tried is discarded
        with cm.connection(user_dn(1), "wrong"):
            pass
    with cm.connection(user_dn(2), USER_PW) as conn:
        conn.set_option(ldap.OPT_SIZELIMIT, 3)  # condemned on return
    cm.purge(user_dn(4))
    bound, found = _counts(cm)
    assert bound == found
    # the same credentials are still lent without a bind
    with cm.connection(user_dn(0), USER_PW) as conn:
        pass
    binds = private_slapd.operation_count("Bind")
    for _ in range(3):
        with cm.connection(user_dn(0), USER_PW) as again:
            assert again is conn
    assert private_slapd.operation_count("Bind") - binds == 1  # operation_count's own bind only
    assert Credentials(user_dn(0), USER_PW).key in cm._users._bound  # type: ignore[union-attr]
    cm.close()
    bound, found = _counts(cm)
    assert bound == {} and not found


def test_identity_keys_compare_passwords_without_holding_them() -> None:
    one = Credentials(user_dn(1), USER_PW)
    assert one.key == Credentials(user_dn(1), USER_PW.encode()).key
    assert one.matches(Credentials(user_dn(1), USER_PW))
    assert one.key != Credentials(user_dn(1), USER_PW + "x").key
    assert one.key != Credentials(user_dn(2), USER_PW).key
    assert not one.matches(Credentials(user_dn(1), "other"))
    assert USER_PW.encode() not in one.key[1] and len(one.key[1]) == 32
    assert Credentials(None, None).key == Credentials("", "").key
