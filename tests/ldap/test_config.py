"""Rows A2, A6, H6 (no secrets) and bad arguments: no server is needed, none is touched."""

from __future__ import annotations

import logging
import pickle

import ldap
import pytest

from geventpool import ConfigurationError
from geventpool.ldap import AuthenticationFailed, Credentials, LDAPPool, TLSPolicy, parse_uris
from geventpool.testing import fd_count

SENTINEL = "S3cr3t-SENTINEL-5f1c"


@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("ldap//h", "ldap//h"),
        ("http://h", "scheme"),
        ("ldap://[::1", "[::1"),
        ("ldap://h:0", "port"),
        ("ldap://h:65536", "port"),
        ("ldap://h:abc", "port"),
        (" , ", "empty"),
        ("ldap://ok:389, ldap//bad", "ldap//bad"),
        ("ldap://h/dc=x?cn", "only scheme"),
        ("ldap://h:", "port"),
        ("ldapi://%2Fvar%2Frun", "scheme"),
    ],
)
def test_bad_uris_name_the_entry(uri: str, fragment: str) -> None:
    before = fd_count()
    with pytest.raises(ConfigurationError) as info:
        LDAPPool(uri)
    assert fragment in str(info.value)
    assert fd_count() == before


def test_empty_uri_means_libldaps_default_as_in_ldappool() -> None:
    """ldappool's uri='': libldap's default URI (here none is configured: ldap://localhost:389)."""
    default = ldap.get_option(ldap.OPT_URI)
    pool = LDAPPool("", min_size=0)  # nothing connects
    try:
        assert pool.uri == ""
        expected = "ldap://localhost:389" if not default or "localhost" in default else None
        if expected is not None:
            assert [server.uri for server in pool.ldap_servers] == [expected]
    finally:
        pool.close()


def test_uri_with_credentials_is_redacted() -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool(f"ldap://admin:{SENTINEL}@127.0.0.1:389")
    assert SENTINEL not in str(info.value)
    assert "***@" in str(info.value)


def test_uri_lists_and_trailing_newline() -> None:
    servers = parse_uris("t", "ldap://a:1, ldaps://b  ldap://[::1]:3\n")
    assert [s.uri for s in servers] == ["ldap://a:1", "ldaps://b:636", "ldap://[::1]:3"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"size": 0}, "size"),
        ({"size": 1.5}, "size"),
        ({"size": True}, "size"),
        ({"retry_max": 0}, "retry_max"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"connect_timeout": float("inf")}, "connect_timeout"),
        ({"use_tls": "yes"}, "use_tls"),
        ({"connector_cls": ldap.ldapobject.SimpleLDAPObject}, "connector_cls"),
        ({"use_tls": True, "tls_ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"use_tls": True, "tls_min_version": "1.7"}, "min_version"),
        ({"use_tls": True, "tls_cert_file": __file__}, "key_file"),
        ({"per_user": "subpools", "identity_size": 0}, "identity_size"),
        ({"user_size": 0}, "user_size"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool("ldap://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]
    assert name in str(info.value)


def test_timeout_minus_one_means_the_finite_default() -> None:
    pool = LDAPPool("ldap://127.0.0.1:1", timeout=-1)
    assert pool.operation_timeout == 30.0


@pytest.mark.parametrize("password", ["", None, b""])
def test_empty_password_with_a_dn_is_refused_at_construction(password: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool("ldap://127.0.0.1:1", "cn=x,dc=example,dc=com", password)  # type: ignore[arg-type]
    assert "empty password" in str(info.value)


def test_tls_opt_out_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="geventpool")
    LDAPPool("ldaps://127.0.0.1:1", tls_verify=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("verification is OFF" in r.getMessage() for r in warnings)
    caplog.clear()
    LDAPPool("ldaps://127.0.0.1:1")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_tls_policy_is_a_value() -> None:
    assert TLSPolicy() == TLSPolicy(verify=True)
    assert TLSPolicy(verify=False) != TLSPolicy()
    assert hash(TLSPolicy()) == hash(TLSPolicy())


def test_secrets_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="geventpool")
    pool = LDAPPool("ldap://127.0.0.1:1", "cn=svc,dc=example,dc=com", SENTINEL)
    creds = Credentials("cn=u", SENTINEL)
    for text in (repr(pool), str(pool), repr(pool.stats()), repr(creds), str(creds), repr(pool.__dict__)):
        assert SENTINEL not in text
    for obj in (pool, creds):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    assert SENTINEL not in caplog.text


def test_credentials_compare_without_keeping_copies() -> None:
    a, b, c = Credentials("cn=u", "pw"), Credentials("cn=u", "pw"), Credentials("cn=u", "other")
    assert a.matches(b) and not a.matches(c)
    assert a.key == b.key and a.key != c.key
    assert "pw" not in repr(a.key)
    assert Credentials("cn=u", "").unauthenticated
    assert Credentials(None, None).anonymous


def test_authentication_failed_is_an_invalid_credentials() -> None:
    assert issubclass(AuthenticationFailed, ldap.INVALID_CREDENTIALS)
