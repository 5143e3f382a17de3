"""ldappool's API against a real slapd: README usage, status table, URI lists, purge, use_pool=False."""

from __future__ import annotations

import pickle
from typing import Callable

import gevent
import ldap
import pytest

from geventpool import PoolClosed
from geventpool.ldap import ConnectionManager, LDAPConnection, LDAPPool, MaxConnectionReachedError
from geventpool.testing import fd_count, wait_until
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, SUFFIX, USER_PW, Slapd, free_port, user_dn

MakePool = Callable[..., LDAPPool]


def test_readme_quickstart(slapd: Slapd) -> None:
    cm = ConnectionManager(slapd.uri)
    try:
        with cm.connection(user_dn(7), USER_PW) as conn:
            assert isinstance(conn, ldap.ldapobject.SimpleLDAPObject)
            assert conn.whoami_s() == f"dn:{user_dn(7)}"
            entries = conn.search_s(user_dn(7), ldap.SCOPE_BASE, attrlist=["mail"])
            assert entries == [(user_dn(7), {"mail": [b"user0007@example.com"]})]
    finally:
        cm.close()


def test_default_bind_and_ldappool_options(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=3, retry_max=2, retry_delay=0.01, use_tls=False, timeout=5,
                   use_pool=True, max_lifetime=60)
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        assert conn.timeout == 5
        assert len(conn.search_s(f"ou=people,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user00*)")) == 100
    assert len(cm) == 1


def test_status_table_has_ldappools_columns(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=4, max_lifetime=600)
    with cm.connection():
        table = str(cm)
    for column in ("Slot (4 max)", "Connected", "Active", "URI", "Lifetime (600 max)", "Bind DN"):
        assert column in table
    assert "| active " in table and SERVICE_DN in table and slapd.uri in table
    assert SERVICE_PW not in table


def test_uri_list_fails_over_in_order(slapd: Slapd, make_pool: MakePool) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    cm = make_pool(f"{dead}, {slapd.uri}", retry_max=2, retry_delay=0.01)
    with cm.connection() as conn:
        assert conn._uri == slapd.uri
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_full_pool_raises_max_connection_reached(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=1, checkout_timeout=0.1)
    with cm.connection():
        with pytest.raises(MaxConnectionReachedError):
            with cm.connection():
                pass


def test_use_pool_false_opens_and_unbinds_per_use(private_slapd: Slapd) -> None:
    cm = LDAPPool(private_slapd.uri, SERVICE_DN, SERVICE_PW, use_pool=False)
    before = fd_count()
    for _ in range(3):
        with cm.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert fd_count() == before
    assert len(cm) == 0
    wait_until(lambda: private_slapd.connection_count() == 0, timeout=5)


def test_purge_closes_the_connections_of_a_dn(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri)
    with cm.connection(user_dn(3), USER_PW) as conn:
        first = conn
    with cm.connection(user_dn(3), USER_PW) as conn:
        assert conn is first  # reused for the same identity
    cm.purge(user_dn(3), USER_PW)  # same password: kept
    with cm.connection(user_dn(3), USER_PW) as conn:
        assert conn is first
    cm.purge(user_dn(3))
    assert first.closed
    with cm.connection(user_dn(3), USER_PW) as conn:
        assert conn is not first
    with cm.connection() as service:
        pass
    cm.purge(SERVICE_DN)
    assert service.closed


def test_connections_refuse_pickling(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri)
    with cm.connection() as conn:
        assert isinstance(conn, LDAPConnection)
        with pytest.raises(TypeError):
            pickle.dumps(conn)
    with pytest.raises(TypeError):
        pickle.dumps(cm)


def test_python_ldap_methods_work(private_slapd: Slapd, make_pool: MakePool) -> None:
    from geventpool.testing.slapd import ADMIN_DN, ADMIN_PW

    cm = make_pool(private_slapd.uri, ADMIN_DN, ADMIN_PW)
    dn = f"uid=new,ou=people,{SUFFIX}"
    with cm.connection() as conn:
        attrs = [("objectClass", [b"inetOrgPerson"]), ("uid", [b"new"]), ("cn", [b"N"]), ("sn", [b"N"])]
        conn.add_s(dn, attrs)
        conn.modify_s(dn, [(ldap.MOD_REPLACE, "mail", [b"new@example.com"])])
        assert conn.compare_s(dn, "mail", b"new@example.com") is True
        assert conn.compare_s(dn, "mail", b"other@example.com") is False
        conn.rename_s(dn, "uid=renamed")
        renamed = f"uid=renamed,ou=people,{SUFFIX}"
        assert conn.read_s(renamed, attrlist=["mail"]) == {"mail": [b"new@example.com"]}
        conn.passwd_s(renamed, None, "fresh")
        conn.delete_s(renamed)
        with pytest.raises(ldap.NO_SUCH_OBJECT):
            conn.search_s(renamed, ldap.SCOPE_BASE)
        msgid = conn.search(SUFFIX, ldap.SCOPE_SUBTREE, "(uid=user001*)")
        rtype, data = conn.result(msgid)
        assert rtype == ldap.RES_SEARCH_RESULT and len(data) == 10
        assert conn.read_rootdse_s()["namingContexts"] == [SUFFIX.encode()]
    # an ordinary LDAP error does not discard the connection
    assert cm.stats()["connections_discarded"] == 0


def test_search_all_entries_and_async_one_by_one(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri)
    with cm.connection() as conn:
        assert len(conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", ["uid"])) == 1000
        msgid = conn.search(f"ou=people,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user000*)")
        seen = 0
        while True:
            rtype, data = conn.result(msgid, all=0)
            if rtype == ldap.RES_SEARCH_RESULT:
                break
            seen += len(data)
        assert seen == 10
        assert conn.result(ldap.RES_ANY, all=1, timeout=0) == (None, None)


def test_greenlets_share_the_pool(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=5)

    def work(n: int) -> str:
        with cm.connection() as conn:
            return str(conn.search_s(user_dn(n), ldap.SCOPE_BASE, attrlist=["uid"])[0][1]["uid"][0], "ascii")

    jobs = [gevent.spawn(work, n) for n in range(100)]
    gevent.joinall(jobs, raise_error=True)
    assert [j.value for j in jobs] == [f"user{n:04d}" for n in range(100)]
    assert cm.size <= 5


def test_use_pool_false_keeps_the_bounded_wait_and_the_close(slapd: Slapd) -> None:
    """Row C1 for use_pool=False: at most ``size`` at once, a waiter gives up after
    ``checkout_timeout`` (MaxConnectionReachedError), and a closed pool opens nothing."""
    cm = LDAPPool(slapd.uri, SERVICE_DN, SERVICE_PW, use_pool=False, size=1, checkout_timeout=0.2)
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        with pytest.raises(MaxConnectionReachedError):
            with cm.connection():
                pass
    with cm.connection() as conn:  # the slot came back
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    cm.close()
    with pytest.raises(PoolClosed):
        with cm.connection():
            pass


@pytest.mark.parametrize(("bind", "passwd", "named"), [(123, "pw", "bind"), ("uid=a", 123, "passwd")])
def test_connection_arguments_of_the_wrong_type_are_named(
    slapd: Slapd, make_pool: MakePool, bind: object, passwd: object, named: str
) -> None:
    cm = make_pool(slapd.uri)
    with pytest.raises(TypeError, match=f"connection\\({named}="):
        cm.connection(bind, passwd)  # type: ignore[arg-type]


def test_listeners_see_identity_and_authenticate_connections(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri)
    with cm.connection(user_dn(1), USER_PW):
        pass  # the sub-pool exists before the listener
    seen: list[tuple[str, str]] = []
    cm.on("checkout", lambda pool, conn: seen.append(("checkout", pool.name)))
    cm.on("checkin", lambda pool, conn, error: seen.append(("checkin", pool.name)))
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    with cm.connection(user_dn(1), USER_PW):
        pass
    with cm.connection(user_dn(2), USER_PW):
        pass
    assert cm.authenticate(user_dn(3), USER_PW)
    checkouts = [name for event, name in seen if event == "checkout"]
    assert len(checkouts) == 4 and len(seen) == 8, seen
    assert [name.split("[")[-1].rstrip("]") for name in checkouts[1:]] == ["users", "users", "auth"]


def test_authenticate_with_the_server_down_raises_ldappools_backend_error() -> None:
    from geventpool.ldap import BackendError

    cm = LDAPPool(f"ldap://127.0.0.1:{free_port()}", SERVICE_DN, SERVICE_PW, checkout_timeout=1,
                  connect_timeout=0.3, retry_max=1)
    try:
        with pytest.raises(BackendError) as info:
            cm.authenticate(user_dn(1), USER_PW)
        assert isinstance(info.value, ldap.SERVER_DOWN)
    finally:
        cm.close()
