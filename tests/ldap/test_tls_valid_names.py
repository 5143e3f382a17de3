"""ldap3's ``Tls(valid_names=...)`` (issue 14, item 1): other names, or any name, never another chain.

The server's certificate names ``ldap.internal.test`` only, and the server is
reached as 127.0.0.1.  TLS sessions are counted from slapd's stats log
(``Slapd.tls_sessions``): StartTLS requests plus connections to the
``ldaps://`` port.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any, Callable

import gevent
import ldap
import pytest

from geventpool import ConfigurationError, PoolError
from geventpool.ldap import (
    Connection,
    LDAPPool,
    LDAPServer,
    Server,
    Tls,
    TLSPolicy,
    TLSVerificationError,
    _peer,
)
from geventpool.ldap.ldap3_connection import AUTO_BIND_TLS_BEFORE_BIND
from geventpool.testing import HubMonitor, wait_until
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, TestCA

from .conftest import assert_hub_ok

MakePool = Callable[..., LDAPPool]
NAME = "ldap.internal.test"
MODES = ["starttls", "ldaps"]


@pytest.fixture(scope="module")
def named_slapd() -> Iterator[Slapd]:
    """A slapd whose certificate names ldap.internal.test only (not 127.0.0.1, where it listens)."""
    server = Slapd(users=1, cert_hosts=(NAME,), stats_log=True).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tls12_named_slapd() -> Iterator[Slapd]:
    """The same certificate name, and TLS 1.2 only."""
    server = Slapd(users=1, cert_hosts=(NAME,), stats_log=True,
                   tls_cipher_suite="NORMAL:-VERS-ALL:+VERS-TLS1.2").start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(str(tmp_path_factory.mktemp("other-ca")), "other")


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    """Each test starts with no remembered name and no verified certificate."""
    _peer.forget()
    yield
    _peer.forget()


def _uri(server: Slapd, mode: str) -> str:
    return server.ldaps_uri if mode == "ldaps" else server.uri


def _sessions(server: Slapd, before: int, at_least: int) -> int:
    """TLS sessions since ``before``, once slapd has logged ``at_least`` of them and settled."""
    wait_until(lambda: server.tls_sessions() - before >= at_least, timeout=5)
    gevent.sleep(0.1)
    return server.tls_sessions() - before


def _connect_once(make_pool: MakePool, server: Slapd, mode: str, tls: TLSPolicy, **kwargs: Any) -> LDAPPool:
    """A new pool (nothing shared with earlier ones but the process-wide memory), one checkout."""
    cm = make_pool(_uri(server, mode), use_tls=mode == "starttls", tls=tls, min_size=0, retry_max=1,
                   checkout_timeout=5, **kwargs)
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    return cm


def _refused(make_pool: MakePool, server: Slapd, mode: str, tls: TLSPolicy) -> TLSVerificationError:
    cm = make_pool(_uri(server, mode), use_tls=mode == "starttls", tls=tls, min_size=0, retry_max=1,
                   checkout_timeout=5)
    with gevent.Timeout(10):
        with pytest.raises((TLSVerificationError, PoolError)) as info:
            with cm.connection():
                pass
    error = info.value if isinstance(info.value, TLSVerificationError) else info.value.__cause__
    assert isinstance(error, TLSVerificationError), info.value
    assert "no credentials were sent" in str(error)
    return error


# -- a name of valid_names ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_valid_name_on_the_certificate_is_accepted_and_remembered(
    named_slapd: Slapd, make_pool: MakePool, hub: HubMonitor, mode: str
) -> None:
    """StartTLS: libldap checks 127.0.0.1 (refused), the chain alone (Python), then the valid name
    (accepted): 3 sessions; ldaps: libldap's check, a TCP probe, Python's checks of 127.0.0.1 then
    of the valid name, libldap's pinned handshake: 5.  Then one session per connect."""
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=["other.internal.test", NAME])
    binds = named_slapd.operation_count("Bind")
    before = named_slapd.tls_sessions()
    _connect_once(make_pool, named_slapd, mode, tls)
    cold = _sessions(named_slapd, before, 3)
    # ldaps tries Python's check of other.internal.test before ldap.internal.test: one more
    assert cold == (4 if mode == "starttls" else 6), cold
    before = named_slapd.tls_sessions()
    cm = _connect_once(make_pool, named_slapd, mode, tls)
    assert _sessions(named_slapd, before, 1) == 1
    with cm.connection() as conn:
        expected = ldap.OPT_X_TLS_DEMAND if mode == "starttls" else ldap.OPT_X_TLS_ALLOW
        assert conn.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == expected
        assert repr(conn).startswith(f"<LDAPConnection '{_uri(named_slapd, mode)}'")
    assert named_slapd.operation_count("Bind") == binds + 2 + 1  # two pools, operation_count's own
    assert_hub_ok(hub)


@pytest.mark.parametrize("mode", MODES)
def test_the_first_valid_name_costs_the_fewest_sessions(
    named_slapd: Slapd, make_pool: MakePool, mode: str
) -> None:
    """The counts of the issue: one valid name, the right one."""
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=[NAME])
    before = named_slapd.tls_sessions()
    _connect_once(make_pool, named_slapd, mode, tls)
    assert _sessions(named_slapd, before, 3) == (3 if mode == "starttls" else 5)
    before = named_slapd.tls_sessions()
    _connect_once(make_pool, named_slapd, mode, tls)
    assert _sessions(named_slapd, before, 1) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_certificate_naming_none_of_the_names_is_refused(
    named_slapd: Slapd, make_pool: MakePool, mode: str
) -> None:
    binds = named_slapd.operation_count("Bind")
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=["other.internal.test", "localhost"])
    error = _refused(make_pool, named_slapd, mode, tls)
    assert "names neither the server's host '127.0.0.1' nor any of valid_names" in str(error)
    assert named_slapd.operation_count("Bind") == binds + 1  # operation_count's own


@pytest.mark.parametrize("mode", MODES)
def test_a_valid_name_never_excuses_an_unknown_ca(
    named_slapd: Slapd, make_pool: MakePool, other_ca: TestCA, mode: str
) -> None:
    """The chain fails: no name is tried (StartTLS: libldap's handshake and the chain check only)."""
    binds = named_slapd.operation_count("Bind")
    before = named_slapd.tls_sessions()
    error = _refused(make_pool, named_slapd, mode, Tls(ca_certs_file=other_ca.cert_file, valid_names=[NAME]))
    assert "certificate verify failed" in str(error)
    # ldaps: libldap's handshake, its TCP probe, Python's check of 127.0.0.1
    assert _sessions(named_slapd, before, 2) == (2 if mode == "starttls" else 3)
    assert named_slapd.operation_count("Bind") == binds + 1


def test_a_certificate_naming_the_host_costs_one_session(slapd: Slapd, make_pool: MakePool) -> None:
    """valid_names changes nothing for a certificate that names the server's host."""
    tls = Tls(ca_certs_file=slapd.ca_file, valid_names=[NAME])
    for mode in MODES:
        cm = _connect_once(make_pool, slapd, mode, tls)
        with cm.connection() as conn:
            assert conn.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_DEMAND
    assert _peer.remembered_name(tls, LDAPServer("ldap", "127.0.0.1", slapd.port)) is None


def test_the_valid_name_is_never_looked_up(
    named_slapd: Slapd, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's own connects resolve the server's host only (libldap is given the descriptor of a
    connected socket and does not resolve the URI's host: checked with strace)."""
    asked: list[object] = []
    resolver = gevent.get_hub().resolver
    real = resolver.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(resolver, "getaddrinfo", recording)
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=[NAME])
    for mode in MODES:
        _connect_once(make_pool, named_slapd, mode, tls)
    assert asked and set(asked) == {"127.0.0.1"}, asked


# -- '*' ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_star_accepts_any_name_once_the_chain_verifies(
    named_slapd: Slapd, make_pool: MakePool, mode: str
) -> None:
    """libldap's handshake (require_cert=allow) and Python's chain check: 2 sessions; then the
    certificate is pinned: 1."""
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=["*"])
    before = named_slapd.tls_sessions()
    _connect_once(make_pool, named_slapd, mode, tls)
    assert _sessions(named_slapd, before, 2) == 2
    before = named_slapd.tls_sessions()
    cm = _connect_once(make_pool, named_slapd, mode, tls)
    assert _sessions(named_slapd, before, 1) == 1
    with cm.connection() as conn:
        assert conn.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_ALLOW
        assert conn.get_option(ldap.OPT_X_TLS_PEERCERT)


@pytest.mark.parametrize("mode", MODES)
def test_star_refuses_a_certificate_from_another_ca(
    named_slapd: Slapd, make_pool: MakePool, other_ca: TestCA, mode: str
) -> None:
    binds = named_slapd.operation_count("Bind")
    error = _refused(make_pool, named_slapd, mode, Tls(ca_certs_file=other_ca.cert_file, valid_names=["*"]))
    assert "certificate verify failed" in str(error)
    assert named_slapd.operation_count("Bind") == binds + 1


def test_star_verifies_once_for_concurrent_connects(named_slapd: Slapd, make_pool: MakePool) -> None:
    """Five connects at once, nothing verified yet: five libldap handshakes, one Python check."""
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=["*"])
    cm = make_pool(named_slapd.uri, use_tls=True, tls=tls, min_size=0, size=5, checkout_timeout=5)
    before = named_slapd.tls_sessions()

    def use() -> str:
        with cm.connection() as conn:
            gevent.sleep(0.05)  # hold it: each greenlet gets a connection of its own
            return str(conn.whoami_s())

    results = [g.get(timeout=10) for g in [gevent.spawn(use) for _ in range(5)]]
    assert results == [f"dn:{SERVICE_DN}"] * 5
    assert _sessions(named_slapd, before, 6) == 6


# -- what else keeps working ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("names", [(NAME,), ("*",)])
def test_the_min_version_is_still_enforced(
    tls12_named_slapd: Slapd, make_pool: MakePool, mode: str, names: tuple[str, ...]
) -> None:
    server = tls12_named_slapd
    accepted = TLSPolicy(ca_file=server.ca_file, valid_names=names, min_version="1.2")
    cm = _connect_once(make_pool, server, mode, accepted)
    with cm.connection() as conn:
        assert conn._l.get_option(ldap.OPT_X_TLS_VERSION) == "TLS1.2"
    binds = server.operation_count("Bind")
    error = _refused(make_pool, server, mode, TLSPolicy(ca_file=server.ca_file, valid_names=names,
                                                        min_version="1.3"))
    assert "negotiated TLS1.2" in str(error) and "below tls_min_version 1.3" in str(error)
    assert server.operation_count("Bind") == binds + 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("names", [[NAME], ["*"]])
def test_the_ldap3_connection_honours_valid_names(named_slapd: Slapd, mode: str, names: list[str]) -> None:
    """ldap3's Connection: StartTLS on the open connection (its host cannot change: Python's check,
    libldap pinned) or ldaps, TLS before the bind; a certificate naming no name is refused."""
    tls = Tls(ca_certs_file=named_slapd.ca_file, valid_names=names)
    server = Server(_uri(named_slapd, mode), tls=tls)
    auto_bind = AUTO_BIND_TLS_BEFORE_BIND if mode == "starttls" else True
    for _ in range(2):
        before = named_slapd.tls_sessions()
        conn = Connection(server, SERVICE_DN, SERVICE_PW, auto_bind=auto_bind)
        try:
            assert conn.bound and conn.tls_started and conn.whoami_s() == f"dn:{SERVICE_DN}"
        finally:
            conn.unbind()
    assert _sessions(named_slapd, before, 1) == 1  # the second time: the certificate is known
    binds = named_slapd.operation_count("Bind")
    wrong = Server(_uri(named_slapd, mode), tls=Tls(ca_certs_file=named_slapd.ca_file,
                                                    valid_names=["other.internal.test"]))
    with pytest.raises(TLSVerificationError, match="names neither"):
        Connection(wrong, SERVICE_DN, SERVICE_PW, auto_bind=auto_bind)
    assert named_slapd.operation_count("Bind") == binds + 1


def test_cert_none_ignores_valid_names(named_slapd: Slapd, make_pool: MakePool) -> None:
    """As in ldap3: nothing is verified, so no name is checked either (the logged opt-out)."""
    tls = Tls(validate=ssl.CERT_NONE, valid_names=["other.internal.test"])
    assert tls.accepted_names == ()
    _connect_once(make_pool, named_slapd, "starttls", tls)


# -- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (NAME, "valid_names must be a list of host names, not a str"),
        (b"x", "valid_names must be a list of host names, not a bytes"),
        (7, "valid_names must be a list of host names, got int"),
        ({NAME}, "valid_names must be a list of host names, got set"),
        ([NAME, 7], "valid_names entries must be str host names, got int 7"),
        ([""], "valid_names entry '' is not a host name"),
        (["bad name"], "valid_names entry 'bad name' is not a host name"),
        (["*.example.com"], r"valid_names entry '\*.example.com' is not a host name"),
        (["ldap://host"], "valid_names entry 'ldap://host' is not a host name"),
        ([f"h{n}.test" for n in range(17)], "valid_names has 17 entries, at most 16"),
    ],
)
def test_bad_valid_names_are_refused_at_construction(names: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Tls(valid_names=names)


def test_valid_names_are_part_of_the_policy() -> None:
    """Normalised (lower case, no trailing dot, no repeat, order kept); pools whose names differ
    never share connections, since a policy keys them."""
    tls = Tls(valid_names=["LDAP.Internal.Test.", "*", "::1", "ldap.internal.test"])
    assert tls.valid_names == (NAME, "*", "::1")
    assert tls.accepted_names is None
    assert Tls(valid_names=[NAME]) == Tls(valid_names=[NAME.upper()])
    assert Tls(valid_names=[NAME]) != Tls(valid_names=["other.internal.test"])
    assert Tls(valid_names=[NAME]).accepted_names == (NAME,)
    assert f"valid_names=['{NAME}']" in repr(Tls(valid_names=[NAME]))
    policy = TLSPolicy(valid_names=[NAME])  # type: ignore[arg-type]
    assert policy.valid_names == (NAME,) and hash(policy) == hash(TLSPolicy(valid_names=(NAME,)))
    with pytest.raises(ConfigurationError, match="valid_names entry 'Not A Name'"):
        LDAPPool("ldaps://127.0.0.1:1", tls=TLSPolicy(valid_names=("Not A Name",)))


def test_starttls_request_and_response_in_ber() -> None:
    request = _peer.starttls_request()
    assert request == bytes.fromhex("301d02010177188016") + _peer.STARTTLS_OID.encode()
    ok = bytes.fromhex("300c02010178070a010004000400")
    assert _peer.starttls_result(ok) == (0, "")
    refused = bytes.fromhex("3012020101780d0a01020400040662616e6e6564")
    assert _peer.starttls_result(refused) == (2, "banned")
    notice = bytes.fromhex("300c02010078070a013404000400")
    with pytest.raises(ValueError, match="unsolicited notice"):
        _peer.starttls_result(notice)
    with pytest.raises(ValueError):
        _peer.starttls_result(b"\x30\x05\x02\x01")
