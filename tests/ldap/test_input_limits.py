"""Issue 12, items 7, 8 and 11 against a real slapd: bad input refused client-side (naming the
argument, never its value), no caller can trip the shared circuit breaker, no lockout amplification."""

from __future__ import annotations

from collections.abc import Callable

import gevent
import ldap
import pytest

from geventpool import ConfigurationError
from geventpool.ldap import AuthenticationFailed, LDAPPool
from geventpool.ldap.credentials import Credentials
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, user_dn

MakePool = Callable[..., LDAPPool]
SECRET = "S3cret-NotShown"


@pytest.mark.parametrize("dn", [f"uid=a\x00{SECRET},dc=example,dc=com", f"not a dn {SECRET}"])
def test_a_bad_bind_dn_is_refused_at_construction_naming_the_argument(slapd: Slapd, dn: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        LDAPPool(slapd.uri, dn, SERVICE_PW)
    assert "bind" in str(raised.value) and SECRET not in str(raised.value)


def test_bad_caller_input_is_refused_before_anything_is_sent(make_pool: MakePool) -> None:
    slapd = Slapd(users=5, tls=False, stats_log=True).start()
    pool = make_pool(slapd.uri, size=1)
    pool.wait(5)
    binds = slapd.operation_count("Bind")
    with pytest.raises(TypeError, match="password"):
        pool.authenticate(user_dn(1), 123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dn"):
        pool.authenticate(123, "userpw")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError) as raised:
        pool.authenticate(f"uid=x\x00{SECRET}", "userpw")
    assert "dn" in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        pool.authenticate(user_dn(1), SECRET * 30_000)  # ~450 KB: slapd would drop the connection
    assert "password" in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(ConfigurationError):
        with pool.connection(user_dn(1), SECRET * 30_000):
            pass
    assert slapd.operation_count("Bind") == binds + 1  # nothing reached it (but this count's own bind)
    assert pool.authenticate(user_dn(1), "userpw") is True
    pool.close()
    slapd.close()


def test_ad_logon_names_are_accepted_as_bind_names() -> None:
    for name in ("alice@example.com", "EXAMPLE\\alice", "uid=alice,ou=people,dc=example,dc=com"):
        assert Credentials(name, "pw").dn == name


def test_a_caller_whose_bind_the_server_drops_cannot_open_the_shared_circuit(
    slapd: Slapd, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Credentials, "max_password_bytes", 10**7)  # let the oversized binds through
    pool = make_pool(slapd.uri, size=2, retry_max=1)
    assert pool.authenticate(user_dn(1), "userpw")
    outcomes = []
    for _ in range(8):  # slapd drops these connections mid-bind (or refuses the bind, once bound)
        try:
            with pool.connection(user_dn(2), SECRET * 30_000):
                outcomes.append("entered")
        except ldap.LDAPError as error:
            outcomes.append(type(error).__name__)
        try:
            outcomes.append(str(pool.authenticate(user_dn(3), SECRET * 30_000)))
        except ldap.LDAPError as error:
            outcomes.append(type(error).__name__)
    assert "entered" not in outcomes and "True" not in outcomes, outcomes
    assert "BindDropped" in outcomes or "SERVER_DOWN" in outcomes, outcomes  # the attack did happen
    health = pool.server_stats()
    assert all(entry["failures"] == 0 and entry["state"] == "closed" for entry in health.values()), health
    with pool.connection() as conn:  # legitimate users are still served
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert pool.authenticate(user_dn(1), "userpw")


def test_a_refused_service_password_is_not_sent_again_until_it_changes(make_pool: MakePool) -> None:
    with Slapd(users=5, tls=False, stats_log=True) as server:
        before = server.operation_count("Bind")  # the helper's own readiness check binds
        pool = make_pool(server.uri, SERVICE_DN, "wrong", size=3, min_size=3, keepalive=0.2)
        for _ in range(5):
            with pytest.raises(AuthenticationFailed):
                with pool.connection():
                    pass
        gevent.sleep(0.6)  # housekeeping passes, keepalive, refills: none binds
        pool.run_housekeeping()
        # one bind on the wire for six attempts (and the one of this count's own ldapsearch)
        assert server.operation_count("Bind") - before == 2
        with pytest.raises(AuthenticationFailed, match="not sent again"):
            with pool.connection():
                pass
        pool.set_credentials(SERVICE_DN, SERVICE_PW)
        with pool.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
