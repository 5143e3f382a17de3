"""ldappool's per-user idiom, ``connection(dn, password)`` with ``per_user="rebind"`` (the default).

Every rule of :mod:`geventpool.ldap._users`, each as an attacker or a careless
caller would try it: a connection is bound as its caller (bind result checked)
before it is lent, never lent to another identity without a successful re-bind,
discarded when a bind fails, and a refused bind is never sent again.
"""

from __future__ import annotations

import random
from typing import Callable

import gevent
import ldap
import pytest

from geventpool import ConfigurationError
from geventpool.ldap import AuthenticationFailed, LDAPPool
from geventpool.testing.slapd import SERVICE_DN, USER_PW, Slapd, user_dn

MakePool = Callable[..., LDAPPool]


def _whoami(cm: LDAPPool, dn: str, password: str = USER_PW) -> str:
    with cm.connection(dn, password) as conn:
        return conn.whoami_s()


def test_thousand_users_share_user_size_connections_one_bind_each(slapd: Slapd, make_pool: MakePool) -> None:
    """1,000 distinct users, one after the other: never more than user_size connections, each call
    bound as its caller."""
    cm = make_pool(slapd.uri, size=2, user_size=3)
    for n in range(1000):
        assert _whoami(cm, user_dn(n)) == f"dn:{user_dn(n)}"
    stats = cm.stats()
    assert stats["users_pool_size"] <= 3
    assert cm._users is not None and cm._users.stats()["connections_num"] <= 3
    assert cm.size <= 2  # the service connections are never re-bound


def test_same_credentials_reuse_the_bound_connection_without_a_bind(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(private_slapd.uri, size=1, user_size=4)
    first = _whoami(cm, user_dn(1))
    _whoami(cm, user_dn(2))
    _whoami(cm, user_dn(3))
    binds = private_slapd.operation_count("Bind")
    for _ in range(5):
        for n in (1, 2, 3):
            assert _whoami(cm, user_dn(n)) == f"dn:{user_dn(n)}"
    assert first == f"dn:{user_dn(1)}"
    assert private_slapd.operation_count("Bind") - binds == 1  # operation_count's own bind only


def test_a_connection_changes_identity_only_through_a_checked_bind(slapd: Slapd, make_pool: MakePool) -> None:
    """user_size=1: one connection serves user 1, then user 2, then user 1 again."""
    cm = make_pool(slapd.uri, user_size=1)
    with cm.connection(user_dn(1), USER_PW) as conn:
        one = conn
    with cm.connection(user_dn(2), USER_PW) as conn:
        assert conn is one and conn.whoami_s() == f"dn:{user_dn(2)}"
        assert conn.bound_dn == user_dn(2)
    with cm.connection(user_dn(1), USER_PW) as conn:
        assert conn is one and conn.whoami_s() == f"dn:{user_dn(1)}"


def test_wrong_password_never_gets_a_connection_and_discards_the_one_tried(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(private_slapd.uri, user_size=1)
    with cm.connection(user_dn(1), USER_PW) as conn:
        bound = conn
    binds = private_slapd.operation_count("Bind")
    with pytest.raises(AuthenticationFailed):
        with cm.connection(user_dn(1), "wrong"):
            pytest.fail("a refused bind lent a connection")
    assert bound.closed  # tried with the wrong password: anonymous now, never lent again
    for _ in range(5):  # refused again at once: nothing on the wire
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            with cm.connection(user_dn(1), "wrong"):
                pass
    assert private_slapd.operation_count("Bind") - binds == 1 + 1  # the first try + operation_count's
    assert _whoami(cm, user_dn(1)) == f"dn:{user_dn(1)}"  # the right password still works


def test_a_wrong_password_sent_by_many_greenlets_at_once_costs_one_bind(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(private_slapd.uri, user_size=10)
    _whoami(cm, user_dn(2))  # the connections exist
    binds = private_slapd.operation_count("Bind")
    refused: list[bool] = []

    def attempt() -> None:
        try:
            with cm.connection(user_dn(3), "not-" + USER_PW):
                refused.append(False)
        except ldap.INVALID_CREDENTIALS:
            refused.append(True)

    gevent.joinall([gevent.spawn(attempt) for _ in range(50)], raise_error=True)
    assert refused == [True] * 50
    assert private_slapd.operation_count("Bind") - binds == 1 + 1


def test_a_borrowers_own_bind_condemns_the_connection(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, user_size=1)
    with cm.connection(user_dn(1), USER_PW) as conn:
        first = conn
        conn.simple_bind_s(user_dn(2), USER_PW)  # now user 2, though the pool lent it as user 1
    assert first.closed
    assert _whoami(cm, user_dn(1)) == f"dn:{user_dn(1)}"


def test_options_set_by_a_user_do_not_reach_the_next_user(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, user_size=1)
    with cm.connection(user_dn(1), USER_PW) as conn:
        first = conn
        conn.set_option(ldap.OPT_SIZELIMIT, 1)
    assert first.closed
    with cm.connection(user_dn(2), USER_PW) as conn:
        assert conn.get_option(ldap.OPT_SIZELIMIT) == 0


def test_purge_forgets_the_identity(private_slapd: Slapd, make_pool: MakePool) -> None:
    """An idle connection bound as the purged DN is closed; one in use is bound again before reuse."""
    cm = make_pool(private_slapd.uri, user_size=2)
    with cm.connection(user_dn(5), USER_PW) as held:
        with cm.connection(user_dn(6), USER_PW) as idle_later:
            pass
        with cm.connection(user_dn(6), USER_PW) as again:
            assert again is idle_later
        cm.purge(user_dn(6))
        assert idle_later.closed
        cm.purge(user_dn(5))
        assert not held.closed  # in use: untouched now
    binds = private_slapd.operation_count("Bind")
    assert _whoami(cm, user_dn(5)) == f"dn:{user_dn(5)}"
    assert private_slapd.operation_count("Bind") - binds == 1 + 1  # bound again, though the same DN


def test_a_kill_or_timeout_during_the_bind_discards_the_connection(
    private_slapd: Slapd, make_pool: MakePool
) -> None:
    cm = make_pool(private_slapd.uri, user_size=1, timeout=5)
    with cm.connection(user_dn(1), USER_PW) as conn:
        first = conn
    private_slapd.pause()
    try:
        job = gevent.spawn(_whoami, cm, user_dn(2))
        gevent.sleep(0.05)  # not a race: whatever it reached, killing it must leave nothing lent
        job.kill()
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.1):
                _whoami(cm, user_dn(3))
    finally:
        private_slapd.resume()
    assert first.closed
    state = cm._users.snapshot() if cm._users is not None else None
    assert state is not None and state.in_use == 0
    assert _whoami(cm, user_dn(1)) == f"dn:{user_dn(1)}"


def test_a_server_restart_costs_the_caller_nothing(private_slapd: Slapd, make_pool: MakePool) -> None:
    """Idle connections the server dropped: the re-bind fails on one, the caller gets another."""
    cm = make_pool(private_slapd.uri, user_size=3)
    jobs = [gevent.spawn(_whoami, cm, user_dn(n)) for n in range(3)]
    gevent.joinall(jobs, raise_error=True)
    private_slapd.restart(graceful=False)
    assert _whoami(cm, user_dn(4)) == f"dn:{user_dn(4)}"
    assert _whoami(cm, user_dn(0)) == f"dn:{user_dn(0)}"


def test_identity_chaos_with_kills_and_timeouts_never_mixes(slapd: Slapd, make_pool: MakePool) -> None:
    """300 greenlets, 40 users on 5 connections, one call in ten with a wrong password, one in
    ten killed or timed out at a random point: every lent connection is its caller's."""
    cm = make_pool(slapd.uri, size=2, user_size=5)
    mismatches: list[str] = []
    accepted_wrong: list[str] = []
    rng = random.Random(11)

    def work(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(20):
            n = local.randrange(40)
            wrong = local.random() < 0.1
            try:
                with cm.connection(user_dn(n), ("bad-" if wrong else "") + USER_PW) as conn:
                    if wrong:
                        accepted_wrong.append(user_dn(n))
                    if conn.whoami_s() != f"dn:{user_dn(n)}":
                        mismatches.append(user_dn(n))
            except ldap.INVALID_CREDENTIALS:
                assert wrong
            except gevent.Timeout:
                pass

    def timed(seed: int) -> None:
        with gevent.Timeout(rng.choice([0.0005, 0.002, 0.01]), False):
            work(seed)

    jobs = [gevent.spawn(timed if n % 10 == 0 else work, n) for n in range(300)]
    for _ in range(30):
        gevent.sleep(rng.random() * 0.01)
        rng.choice(jobs).kill(block=False)
    gevent.joinall(jobs)
    assert [job.exception for job in jobs if job.exception is not None] == []
    assert mismatches == [] and accepted_wrong == []
    assert cm._users is not None and cm._users.snapshot().in_use == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"identity_size": 2}, "identity_size applies to per_user='subpools'"),
        ({"max_identities": 8}, "max_identities applies to per_user='subpools'"),
        ({"per_user": "subpools", "user_size": 2}, "user_size applies to per_user='rebind'"),
        ({"per_user": "both"}, "per_user must be 'rebind' or 'subpools'"),
        ({"user_size": 0}, "user_size"),
    ],
)
def test_bad_per_user_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LDAPPool("ldap://127.0.0.1:1", SERVICE_DN, "x", **kwargs)  # type: ignore[arg-type]
