"""Rows H1-H5: TLS verified by default, per connection, failing closed before any bind."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Callable

import gevent
import ldap
import pytest

from geventpool import PoolError
from geventpool.ldap import LDAPPool, TLSVerificationError
from geventpool.testing.slapd import SERVICE_DN, Slapd, TestCA

MakePool = Callable[..., LDAPPool]

_TLS_OPTIONS = (
    ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_CACERTFILE, ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_REFERRALS,
    ldap.OPT_NETWORK_TIMEOUT,
)


def _global_options() -> list[object]:
    return [ldap.get_option(option) for option in _TLS_OPTIONS]


@pytest.fixture(scope="module")
def wrong_host_slapd() -> Iterator[Slapd]:
    server = Slapd(users=1, cert_hosts=("otherhost.example",)).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def expired_slapd() -> Iterator[Slapd]:
    server = Slapd(users=1, cert_days=0).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def plain_only_slapd() -> Iterator[Slapd]:
    server = Slapd(users=1, tls=False).start()
    yield server
    server.close()


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_verified_tls_works_and_sets_no_global_option(slapd: Slapd, make_pool: MakePool, mode: str) -> None:
    """H1 and H4: secure by default; options per connection only."""
    before = _global_options()
    uri = slapd.ldaps_uri if mode == "ldaps" else slapd.uri
    cm = make_pool(uri, use_tls=mode == "starttls", tls_ca_file=slapd.ca_file)
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        assert conn.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_DEMAND
        assert conn.get_option(ldap.OPT_REFERRALS) == 0
        assert conn.get_option(ldap.OPT_X_TLS_PEERCERT)  # the peer certificate can be inspected
    assert _global_options() == before


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_unknown_ca_fails_before_any_bind(
    slapd: Slapd, make_pool: MakePool, tmp_path: object, mode: str
) -> None:
    """H2: a CA we do not trust; the server never sees a BIND."""
    other_ca = TestCA(str(tmp_path), "other")
    binds = slapd.operation_count("Bind")
    uri = slapd.ldaps_uri if mode == "ldaps" else slapd.uri
    cm = make_pool(uri, use_tls=mode == "starttls", tls_ca_file=other_ca.cert_file, retry_max=2)
    with gevent.Timeout(5):
        with pytest.raises(TLSVerificationError) as info:
            with cm.connection():
                pass
    assert "no credentials were sent" in str(info.value)
    assert slapd.operation_count("Bind") == binds + 1  # the monitor query's own bind


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_wrong_hostname_is_refused(wrong_host_slapd: Slapd, make_pool: MakePool, mode: str) -> None:
    """H2: the certificate is valid, for another host."""
    uri = wrong_host_slapd.ldaps_uri if mode == "ldaps" else wrong_host_slapd.uri
    cm = make_pool(uri, use_tls=mode == "starttls", tls_ca_file=wrong_host_slapd.ca_file)
    with pytest.raises(TLSVerificationError):
        with cm.connection():
            pass


def test_expired_certificate_is_refused(expired_slapd: Slapd, make_pool: MakePool) -> None:
    """H2: an expired certificate."""
    cm = make_pool(expired_slapd.uri, use_tls=True, tls_ca_file=expired_slapd.ca_file)
    with pytest.raises(TLSVerificationError):
        with cm.connection():
            pass


def test_failed_starttls_never_falls_back_to_plaintext(plain_only_slapd: Slapd, make_pool: MakePool) -> None:
    """H3: the server cannot do StartTLS: fail closed, no plaintext bind."""
    binds = plain_only_slapd.operation_count("Bind")
    cm = make_pool(plain_only_slapd.uri, use_tls=True)
    with pytest.raises(PoolError):
        with cm.connection():
            pass
    assert plain_only_slapd.operation_count("Bind") == binds + 1  # the monitor query's own bind


def test_opt_out_connects_and_warns(
    wrong_host_slapd: Slapd, make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    """H4: verification off only when asked, with a WARNING."""
    caplog.set_level(logging.WARNING, logger="geventpool")
    cm = make_pool(wrong_host_slapd.uri, use_tls=True, tls_verify=False)
    assert "verification is OFF" in caplog.text
    with cm.connection() as conn:
        assert conn.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_NEVER
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_policies_never_share_connections(slapd: Slapd, make_pool: MakePool) -> None:
    """H5: a verifying pool and a non-verifying pool to the same host hold different connections."""
    loose = make_pool(slapd.uri, use_tls=True, tls_verify=False)
    strict = make_pool(slapd.uri, use_tls=True, tls_ca_file=slapd.ca_file)
    with loose.connection() as a:
        pass
    with strict.connection() as b:
        assert b is not a
        assert b.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_DEMAND
    assert loose.tls != strict.tls


# -- ldap3's Tls ------------------------------------------------------------------------------------


def test_ldap3_tls_verifies_by_default(slapd: Slapd, make_pool: MakePool) -> None:
    """Tls() without ca_certs_file: verified against the system store, which does not know the test
    CA (ldap3's Tls() would accept any certificate)."""
    from geventpool.ldap import Server, Tls

    cm = make_pool(Server(slapd.ldaps_uri, tls=Tls()), checkout_timeout=3, retry_max=1)
    with pytest.raises(PoolError) as info:
        with cm.connection():
            pass
    assert isinstance(info.value.__cause__ or info.value, TLSVerificationError) or "TLS" in str(info.value)


def test_ldap3_tls_arguments_map_onto_the_policy(slapd: Slapd, make_pool: MakePool) -> None:
    import ssl

    from geventpool.ldap import Server, Tls

    tls = Tls(ca_certs_file=slapd.ca_file, validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
              ciphers="NORMAL")
    assert (tls.verify, tls.ca_file, tls.min_version, tls.ciphers) == (True, slapd.ca_file, "1.2", "NORMAL")
    cm = make_pool(Server(slapd.ldaps_uri, tls=tls))
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_ldap3_tls_cert_none_is_the_logged_opt_out(
    slapd: Slapd, make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl

    from geventpool.ldap import Server, Tls

    caplog.set_level(logging.WARNING, logger="geventpool")
    cm = make_pool(Server(slapd.ldaps_uri, tls=Tls(validate=ssl.CERT_NONE)))
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert "verification is OFF" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"valid_names": "a.example"}, "valid_names must be a list of host names, not a str"),
        ({"ca_certs_data": "-----BEGIN"}, "ca_certs_data is not supported"),
        ({"local_private_key_password": "pw"}, "local_private_key_password is not supported"),
        ({"validate": 7}, "validate must be"),
        ({"version": "2.0"}, "version must be"),
        ({"ca_certs_file": "/nonexistent.pem"}, "ca_certs_file '/nonexistent.pem' is not a readable file"),
        ({"ciphers": "no-such-cipher!!"}, "tls ciphers 'no-such-cipher!!' is not a cipher suite"),
    ],
)
def test_ldap3_tls_bad_arguments_are_refused_at_construction(kwargs: dict[str, object], named: str) -> None:
    from geventpool import ConfigurationError
    from geventpool.ldap import Tls

    with pytest.raises(ConfigurationError, match=named) as info:
        Tls(**kwargs)  # type: ignore[arg-type]
    assert "pw" not in str(info.value).replace("password", "")


# -- the TLS version, enforced by the library (issue 12, item 4) --------------------------------------


@pytest.fixture(scope="module")
def only_version() -> Iterator[dict[str, Slapd]]:
    """Three slapds, each speaking one TLS version only (GnuTLS priority strings)."""
    servers: dict[str, Slapd] = {}
    try:
        for version in ("1.1", "1.2", "1.3"):
            servers[version] = Slapd(
                users=1, stats_log=True, tls_cipher_suite=f"NORMAL:-VERS-ALL:+VERS-TLS{version}"
            ).start()
        yield servers
    finally:
        for server in servers.values():
            server.close()


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
@pytest.mark.parametrize("offered", ["1.1", "1.2", "1.3"])
@pytest.mark.parametrize("minimum", ["1.0", "1.2", "1.3"])
def test_tls_min_version_is_enforced_after_the_handshake(
    only_version: dict[str, Slapd], make_pool: MakePool, mode: str, offered: str, minimum: str
) -> None:
    """libldap's GnuTLS build ignores OPT_X_TLS_PROTOCOL_MIN: the pool reads the version negotiated and
    refuses one below tls_min_version before any bind."""
    server = only_version[offered]
    uri = server.uri if mode == "starttls" else server.ldaps_uri
    binds = server.operation_count("Bind")
    cm = make_pool(uri, use_tls=mode == "starttls", tls_ca_file=server.ca_file, tls_min_version=minimum,
                   checkout_timeout=3, retry_max=1, min_size=0)
    if tuple(map(int, offered.split("."))) >= tuple(map(int, minimum.split("."))):
        with cm.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
            assert conn._l.get_option(ldap.OPT_X_TLS_VERSION) == f"TLS{offered}"
        return
    with pytest.raises((TLSVerificationError, PoolError)) as info:
        with cm.connection():
            pass
    error = info.value if isinstance(info.value, TLSVerificationError) else info.value.__cause__
    assert isinstance(error, TLSVerificationError), info.value
    assert f"negotiated TLS{offered}" in str(error) and f"below tls_min_version {minimum}" in str(error)
    assert server.operation_count("Bind") == binds + 1  # operation_count's own: no bind of ours
