"""ConnectionInfo: documented defaults, validate() on bad configurations, dict/env round trips, no secrets."""

from __future__ import annotations

import os
import pickle
from typing import Any

import pytest

from geventpool.errors import ConfigurationError
from geventpool.ldap.compat.info import ConnectionInfo

SECRET = "S3cr3t-SENTINEL-info"
DN = "cn=admin,dc=example,dc=com"


def test_documented_defaults() -> None:
    info = ConnectionInfo(host="ldap.example.com")
    assert (info.port, info.bind_dn, info.password) == (389, None, None)
    assert (info.use_ssl, info.use_tls) == (False, False)
    assert (info.timeout, info.max_retries, info.retry_delay) == (30, 3, 1.0)
    assert (info.pool_size, info.max_pool_size, info.pool_timeout) == (10, 50, 60)
    assert info.validate_cert is True
    assert (info.ca_cert_path, info.client_cert_path, info.client_key_path) == (None, None, None)
    assert (info.priority, info.password_callback) == (0, None)
    assert info.validate().valid
    assert info.uri == "ldap://ldap.example.com:389"
    assert ConnectionInfo(host="h", port=636, use_ssl=True).uri == "ldaps://h:636"


@pytest.fixture
def pem(tmp_path: Any) -> str:
    path = tmp_path / "ca.crt"
    path.write_text("not really a certificate\n")
    return str(path)


BAD: list[tuple[dict[str, Any], list[str]]] = [
    ({"host": ""}, ["host must be a non-empty str"]),
    ({"host": "ldap://x"}, ["is not a hostname"]),
    ({"host": "h", "port": 0}, ["port must be 1..65535"]),
    ({"host": "h", "port": "389"}, ["port must be an int"]),
    ({"host": "h", "port": True}, ["port must be an int"]),
    ({"host": "h", "timeout": 0}, ["timeout must be > 0"]),
    ({"host": "h", "timeout": float("nan")}, ["timeout must be a number"]),
    ({"host": "h", "retry_delay": -1}, ["retry_delay must be >= 0"]),
    ({"host": "h", "max_retries": -1}, ["max_retries must be >= 0"]),
    ({"host": "h", "pool_size": 20, "max_pool_size": 10}, ["must not exceed max_pool_size"]),
    ({"host": "h", "max_pool_size": 0}, ["max_pool_size must be >= 1"]),
    ({"host": "h", "pool_timeout": "60"}, ["pool_timeout must be a number"]),
    ({"host": "h", "use_ssl": True, "use_tls": True}, ["exclude each other"]),
    ({"host": "h", "use_tls": "yes"}, ["use_tls must be True or False"]),
    ({"host": "h", "bind_dn": DN}, ["has no password"]),
    ({"host": "h", "bind_dn": "admin", "password": "x"}, ["bind_dn must be a DN"]),
    ({"host": "h", "password": "x"}, ["without bind_dn"]),
    ({"host": "h", "bind_dn": DN, "password": "x", "password_callback": lambda: "y"}, ["not both"]),
    ({"host": "h", "bind_dn": DN, "password_callback": "not callable"}, ["must be callable"]),
    ({"host": "h", "use_tls": True, "ca_cert_path": "/nonexistent/ca.crt"},
     ["ca_cert_path", "not a readable"]),
    ({"host": "h", "priority": 1.5}, ["priority must be an int"]),
]


@pytest.mark.parametrize("fields, expected", BAD)
def test_validate_names_the_problem(fields: dict[str, Any], expected: list[str]) -> None:
    result = ConnectionInfo(**fields).validate()
    assert not result.valid and not result
    text = "; ".join(result.errors)
    for part in expected:
        assert part in text, text
    assert result.schema_errors is result.errors


def test_validate_lists_every_problem(pem: str) -> None:
    info = ConnectionInfo(
        host="", port=70000, bind_dn=DN, timeout=-1, pool_size=9, max_pool_size=3, use_ssl=True, use_tls=True,
        client_cert_path=pem,
    )
    errors = info.validate().errors
    for part in ("host", "port", "timeout", "max_pool_size", "exclude each other", "has no password",
                 "client_cert_path and client_key_path go together"):
        assert any(part in e for e in errors), (part, errors)
    assert len(errors) >= 7
    with pytest.raises(ConfigurationError) as caught:
        info.check()
    assert "port" in str(caught.value) and "timeout" in str(caught.value)


def test_tls_files_without_tls_and_warnings(pem: str) -> None:
    result = ConnectionInfo(host="h", ca_cert_path=pem).validate()
    assert any("neither use_ssl nor use_tls" in e for e in result.errors)
    unverified = ConnectionInfo(host="h", use_ssl=True, port=636, ca_cert_path=pem, validate_cert=False)
    result = unverified.validate()
    assert result.valid and any("validate_cert=False" in w for w in result.warnings)
    result = ConnectionInfo(host="h", bind_dn=DN, password=SECRET).validate()
    assert result.valid and any("clear text" in w for w in result.warnings)


def test_from_dict_and_to_dict() -> None:
    data = {"host": "ldap.example.com", "port": 636, "use_ssl": True, "bind_dn": DN, "password": SECRET}
    info = ConnectionInfo.from_dict(data)
    assert info.password == SECRET and info.port == 636
    plain = info.to_dict()
    assert "password" not in plain and SECRET not in repr(plain)
    assert plain["host"] == "ldap.example.com" and plain["pool_size"] == 10
    assert info.to_dict(include_password=True)["password"] == SECRET
    assert ConnectionInfo.from_dict(info.to_dict(include_password=True)) == info
    assert "password_callback" not in ConnectionInfo(host="h", bind_dn=DN, password_callback=str).to_dict()


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ConnectionInfo.from_dict({"host": "h", "hostname": "x", "base_dn": "dc=x", "password": SECRET})
    text = str(caught.value)
    assert "'base_dn'" in text and "'hostname'" in text and "known keys" in text
    assert SECRET not in text
    with pytest.raises(ConfigurationError, match="'host' is required"):
        ConnectionInfo.from_dict({"port": 389})
    with pytest.raises(ConfigurationError, match="mapping"):
        ConnectionInfo.from_dict([("host", "h")])  # type: ignore[arg-type]


def test_from_env() -> None:
    env = {"LDAP_HOST": "ldap.example.com", "LDAP_PORT": "636", "LDAP_BIND_DN": DN, "LDAP_PASSWORD": SECRET,
           "LDAP_CA_CERT_PATH": "/etc/ssl/ldap-ca.crt", "LDAP_USE_SSL": "true", "LDAP_POOL_SIZE": "20"}
    info = ConnectionInfo.from_env(environ=env)
    assert (info.host, info.port, info.bind_dn, info.password) == ("ldap.example.com", 636, DN, SECRET)
    assert info.ca_cert_path == "/etc/ssl/ldap-ca.crt" and info.use_ssl is True and info.pool_size == 20
    other = ConnectionInfo.from_env("DIR_", environ={"DIR_HOST": "d"}, port=1389, max_pool_size=10)
    assert (other.host, other.port, other.max_pool_size) == ("d", 1389, 10)
    with pytest.raises(ConfigurationError, match="LDAP_HOST is not set"):
        ConnectionInfo.from_env(environ={})
    with pytest.raises(ConfigurationError, match="LDAP_PORT"):
        ConnectionInfo.from_env(environ={"LDAP_HOST": "h", "LDAP_PORT": "ldaps"})
    os.environ["GPTEST_HOST"] = "from-os-environ"
    try:
        assert ConnectionInfo.from_env("GPTEST_").host == "from-os-environ"
    finally:
        del os.environ["GPTEST_HOST"]


def test_no_secret_in_repr_or_pickle() -> None:
    info = ConnectionInfo(host="h", bind_dn=DN, password=SECRET)
    for text in (repr(info), str(info), str(info.to_dict()), str(info.validate()), repr(info.credentials())):
        assert SECRET not in text
    assert "password=***" in repr(info)
    with pytest.raises(TypeError):
        pickle.dumps(info)
    callback_info = ConnectionInfo(host="h", bind_dn=DN, password_callback=lambda: SECRET)
    assert "(callback)" in repr(callback_info) and SECRET not in repr(callback_info.credentials())
