"""Rows G1-G5 and A6: identities never mix, refused binds are never retried."""

from __future__ import annotations

import logging
import random
from typing import Any, Callable

import gevent
import ldap
import pytest

from geventpool.ldap import AuthenticationFailed, LDAPConnection, LDAPPool
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, USER_PW, Slapd, service_dn, user_dn

MakePool = Callable[..., LDAPPool]


def test_user_bind_never_reaches_the_default_borrower(slapd: Slapd, make_pool: MakePool) -> None:
    """G1."""
    cm = make_pool(slapd.uri, size=1)
    with cm.connection(user_dn(1), USER_PW) as conn:
        assert conn.whoami_s() == f"dn:{user_dn(1)}"
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    with cm.connection(user_dn(2), USER_PW) as conn:
        assert conn.whoami_s() == f"dn:{user_dn(2)}"


@pytest.mark.parametrize("per_user", ["rebind", "subpools"])
def test_same_dn_other_password_does_not_reuse(slapd: Slapd, make_pool: MakePool, per_user: str) -> None:
    """A wrong password for a DN is refused by the server even when a connection bound as that DN is
    idle, which is lent again to the right password (per_user='rebind' tries the wrong one on a new
    connection while there is room: see test_rebind for the connection it is tried on)."""
    cm = make_pool(slapd.uri, per_user=per_user)
    with cm.connection(user_dn(4), USER_PW) as conn:
        good = conn
    with pytest.raises(AuthenticationFailed):
        with cm.connection(user_dn(4), "not-the-password"):
            pass
    with cm.connection(user_dn(4), USER_PW) as conn:
        assert conn.whoami_s() == f"dn:{user_dn(4)}"
        assert conn is good


def test_failed_bind_is_raised_by_the_checkout(slapd: Slapd, make_pool: MakePool) -> None:
    """G2: the refusal comes from the bind itself, never a lazy success."""
    cm = make_pool(slapd.uri)
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        with cm.connection(user_dn(5), "wrong"):
            pytest.fail("a refused bind lent a connection")
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_rebinding_inside_the_block_condemns_the_connection(slapd: Slapd, make_pool: MakePool) -> None:
    """G2: a failed or foreign bind leaves the connection anonymous or someone else's: discarded."""
    cm = make_pool(slapd.uri, size=1)
    with cm.connection() as conn:
        first = conn
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            conn.simple_bind_s(user_dn(1), "wrong")
    assert first.closed
    with cm.connection() as conn:
        second = conn
        conn.simple_bind_s(user_dn(1), USER_PW)
    assert second.closed
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert cm.stats()["connections_discarded"] == 2


def test_empty_password_is_refused_client_side(private_slapd: Slapd, make_pool: MakePool) -> None:
    """A6: no BIND reaches the server."""
    cm = make_pool(private_slapd.uri)
    with cm.connection() as conn:
        pass
    binds = private_slapd.operation_count("Bind")
    for password in ("", b""):
        with pytest.raises(AuthenticationFailed) as info:
            with cm.connection(user_dn(1), password):  # type: ignore[arg-type]
                pass
        assert "unauthenticated" in str(info.value)
        with pytest.raises(AuthenticationFailed):
            conn.simple_bind_s(user_dn(1), password)
    assert cm.authenticate(user_dn(1), "") is False
    assert private_slapd.operation_count("Bind") == binds + 1  # the monitor query's own bind


def test_authenticate(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=2, auth_size=2)
    assert cm.authenticate(user_dn(10), USER_PW) is True
    assert cm.authenticate(user_dn(10), "wrong") is False
    assert cm.authenticate(f"uid=nobody,{user_dn(0).split(',', 1)[1]}", USER_PW) is False
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    jobs = [gevent.spawn(cm.authenticate, user_dn(n % 50), USER_PW if n % 3 else "bad") for n in range(200)]
    gevent.joinall(jobs, raise_error=True)
    assert [g.value for g in jobs] == [bool(n % 3) for n in range(200)]
    assert cm._auth is not None and cm._auth.size <= 2
    assert cm.size <= 2  # user binds never touched the service connections


def test_many_identities_no_mismatch(slapd: Slapd, make_pool: MakePool) -> None:
    """G3: 200 greenlets, 20 users plus the service DN, every operation checks whoami."""
    cm = make_pool(slapd.uri, size=5, identity_size=2, max_identities=8, per_user="subpools")
    mismatches: list[str] = []
    rng = random.Random(3)
    plan = [rng.randrange(-1, 20) for _ in range(4000)]

    def work(chunk: list[int]) -> None:
        for n in chunk:
            if n < 0:
                with cm.connection() as conn:
                    if conn.whoami_s() != f"dn:{SERVICE_DN}":
                        mismatches.append("service")
            else:
                with cm.connection(user_dn(n), USER_PW) as conn:
                    if conn.whoami_s() != f"dn:{user_dn(n)}":
                        mismatches.append(user_dn(n))

    gevent.joinall([gevent.spawn(work, plan[i::200]) for i in range(200)], raise_error=True)
    assert mismatches == []
    assert len(cm._identities) <= 20
    cm.run_housekeeping()  # the burst is over: back under the cap
    assert len(cm._identities) <= 8


def test_identities_over_the_cap_while_busy_are_trimmed_once_idle(slapd: Slapd, make_pool: MakePool) -> None:
    """Three users at once with max_identities=2: the cap gives way while all are busy (closing a busy
    sub-pool would fail its callers); housekeeping closes the least recently used one afterwards."""
    cm = make_pool(slapd.uri, size=2, identity_size=1, max_identities=2, per_user="subpools")
    with cm.connection(user_dn(1), USER_PW), cm.connection(user_dn(2), USER_PW):
        with cm.connection(user_dn(3), USER_PW) as third:
            assert third.whoami_s() == f"dn:{user_dn(3)}"
            assert len(cm._identities) == 3
            cm.run_housekeeping()
            assert len(cm._identities) == 3  # all busy: nothing closed
    cm.run_housekeeping()
    assert [key[0] for key in cm._identities] == [user_dn(2), user_dn(3)]
    with cm.connection(user_dn(1), USER_PW) as again:
        assert again.whoami_s() == f"dn:{user_dn(1)}"


def test_evicting_identities_under_contention_leaks_nothing(slapd: Slapd, make_pool: MakePool) -> None:
    """Waves of 100 greenlets, 3 users a wave out of 20, room for 2 sub-pools: each wave evicts the last
    one's idle sub-pools while its greenlets check out the same new users.  Every connection ever
    opened is closed once the pool is (a sub-pool created twice for one identity would be orphaned
    with its connections open)."""
    opened: list[LDAPConnection] = []

    class Recorded(LDAPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    cm = make_pool(slapd.uri, size=2, identity_size=1, max_identities=2, connector_cls=Recorded,
                   per_user="subpools")
    mismatches: list[str] = []

    def work(dn: str) -> None:
        with cm.connection(dn, USER_PW) as conn:
            if conn.whoami_s() != f"dn:{dn}":
                mismatches.append(dn)

    for wave in range(10):
        users = [user_dn((wave * 2 + k) % 20) for k in range(3)]
        gevent.joinall([gevent.spawn(work, users[i % 3]) for i in range(100)], raise_error=True)
    assert mismatches == []
    assert len(opened) > 20  # sub-pools were evicted and reopened
    cm.close()
    assert [conn for conn in opened if not conn.closed] == []


def test_invalid_service_password_fails_fast_without_failover(private_slapd: Slapd) -> None:
    """G5 and D11: one BIND, no retry, no failover to the next URI."""
    other = Slapd(users=1).start()
    try:
        before, other_before = private_slapd.operation_count("Bind"), other.operation_count("Bind")
        uris = f"{private_slapd.uri} {other.uri}"
        cm = LDAPPool(uris, SERVICE_DN, "wrong", retry_max=3, checkout_timeout=5)
        with gevent.Timeout(2):
            with pytest.raises(ldap.INVALID_CREDENTIALS):
                with cm.connection():
                    pass
        cm.close()
        assert private_slapd.operation_count("Bind") == before + 1 + 1  # ours + the monitor query's
        assert other.operation_count("Bind") == other_before + 1  # only the monitor query's
    finally:
        other.close()


def test_rotated_password_backs_off_and_never_logs_it(
    private_slapd: Slapd, make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    """G4: new connections fail with AuthenticationFailed; no retry storm; the password is never logged."""
    caplog.set_level(logging.DEBUG, logger="geventpool")
    secret = "S3cr3t-SENTINEL-rotate"
    private_slapd.set_password(service_dn(2), secret)
    cm = make_pool(private_slapd.uri, service_dn(2), secret, size=2, min_size=0, max_lifetime=600)
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{service_dn(2)}"
    private_slapd.set_password(service_dn(2), "rotated-elsewhere")
    cm.purge(service_dn(2))
    binds = private_slapd.operation_count("Bind")
    failures = 0
    for _ in range(5):
        try:
            with cm.connection():
                pass
        except ldap.INVALID_CREDENTIALS:
            failures += 1
    assert failures == 5
    assert private_slapd.operation_count("Bind") - binds <= 5 + 1
    cm.set_credentials(service_dn(2), "rotated-elsewhere")  # recovers
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{service_dn(2)}"
    assert secret not in caplog.text
    assert secret not in str(cm) and secret not in repr(cm.stats())


def test_set_credentials_never_lends_old_identity(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=2)
    with cm.connection() as held:
        cm.set_credentials(service_dn(3), SERVICE_PW)
    assert held.closed  # came back bound as the old DN: closed, not lent
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{service_dn(3)}"
