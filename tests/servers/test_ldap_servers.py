"""LDAPPool with ``Server`` objects: get_info (rootDSE, schema), per-server TLS and referral hosts,
ldappool's use_pool=False and other identities over several servers, bad input (issue 5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import ldap
import pytest

from geventpool import ConfigurationError
from geventpool.ldap import (
    GET_ALL_INFO,
    GET_DSA_INFO,
    GET_NO_INFO,
    GET_SCHEMA_INFO,
    DSAInfo,
    LDAPPool,
    SchemaInfo,
    Server,
    ServerPool,
    TLSPolicy,
)
from geventpool.servers import POOLING_STRATEGY_FIRST_ACTIVE
from geventpool.testing.slapd import SERVICE_DN, SUFFIX, Slapd, service_dn, user_dn

from .conftest import uri_of

MakePool = Callable[..., LDAPPool]
WHOAMI_OID = "1.3.6.1.4.1.4203.1.11.3"


@pytest.mark.parametrize("get_info", [GET_NO_INFO, GET_DSA_INFO, GET_SCHEMA_INFO, GET_ALL_INFO])
def test_get_info_fills_info_and_schema(replicas: list[Slapd], make_pool: MakePool, get_info: str) -> None:
    server = Server("127.0.0.1", replicas[0].port, get_info=get_info)
    assert server.info is None and server.schema is None
    pool = make_pool(server)
    with pool.connection() as conn:
        conn.whoami_s()
    if get_info in (GET_DSA_INFO, GET_ALL_INFO):
        assert isinstance(server.info, DSAInfo)
        assert server.info.naming_contexts == [SUFFIX]
        assert WHOAMI_OID in server.info.supported_extensions
        assert server.info.supported_ldap_versions == ["3"]
        assert server.info.supported_controls  # OpenLDAP lists a dozen
        assert server.info.schema_entry == "cn=Subschema"
    else:
        assert server.info is None
    if get_info in (GET_SCHEMA_INFO, GET_ALL_INFO):
        assert isinstance(server.schema, SchemaInfo)
        assert any("'inetOrgPerson'" in oc for oc in server.schema.object_classes)
        person = server.schema.subschema.get_obj(ldap.schema.ObjectClass, "inetOrgPerson")
        assert person is not None and "uid" in person.may
    else:
        assert server.schema is None


def test_info_is_read_once_per_server(replicas: list[Slapd], make_pool: MakePool) -> None:
    """Read on the first connection to each server; more connections (and pools) do not read it again."""
    servers = [Server(s.uri, get_info=GET_DSA_INFO) for s in replicas]
    pool = make_pool(ServerPool(servers, "ROUND_ROBIN_ACTIVE"), size=6, min_size=6)
    pool.wait(10)
    assert all(isinstance(s.info, DSAInfo) for s in servers)
    first = [s.info for s in servers]
    searches = [s.operation_count("Search") for s in replicas]
    make_pool(ServerPool(servers, "ROUND_ROBIN_ACTIVE"), size=4, min_size=4).wait(10)
    assert [s.info for s in servers] == first
    # only the monitor queries' own searches
    assert [s.operation_count("Search") for s in replicas] == [n + 1 for n in searches]


@pytest.fixture
def referring(replicas: list[Slapd]) -> Iterator[tuple[Slapd, Slapd]]:
    """replicas[0] holds ou=remote, a referral to the people of replicas[1]."""
    source, target = replicas
    source.modify(
        f"dn: ou=remote,{SUFFIX}\nchangetype: add\nobjectClass: referral\nobjectClass: extensibleObject\n"
        f"ou: remote\nref: ldap://127.0.0.1:{target.port}/ou=people,{SUFFIX}\n"
    )
    yield source, target


def test_server_allowed_referral_hosts_are_honoured(
    referring: tuple[Slapd, Slapd], make_pool: MakePool
) -> None:
    source, target = referring
    # the pool allows no referral; the Server object does (anonymously)
    pool = make_pool(Server(source.uri, allowed_referral_hosts=[("127.0.0.1", False)]))
    binds = target.operation_count("Bind")
    with pool.connection() as conn:
        found = conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)", ["uid"])
    assert found == [(user_dn(1), {"uid": [b"user0001"]})]
    assert target.operation_count("Bind") == binds + 1  # the monitor query's own: none sent by the pool
    plain = make_pool(Server(source.uri, port=None))
    with plain.connection() as conn:
        with pytest.raises(ldap.REFERRAL):
            conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)")


def test_server_tls_policy_is_used_for_that_server(make_pool: MakePool) -> None:
    """A Server's own TLSPolicy (its CA) verifies its ldaps:// connections; the pool's default would not."""
    with Slapd(users=5) as secure:
        server = Server(secure.ldaps_uri, tls=TLSPolicy(ca_file=secure.ca_file))
        pool = make_pool(server, tls_ca_file=None)
        with pool.connection() as conn:
            assert uri_of(conn) == secure.ldaps_uri
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_unpooled_and_other_identities_fail_over(replicas: list[Slapd], make_pool: MakePool) -> None:
    """use_pool=False and connection(dn, pw) use the same servers, order and health."""
    primary, replica = replicas
    primary.kill()
    unpooled = make_pool(f"{primary.uri} {replica.uri}", use_pool=False)
    with unpooled.connection() as conn:
        assert uri_of(conn) == replica.uri
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    pooled = make_pool(f"{primary.uri} {replica.uri}")
    with pooled.connection(service_dn(2), "svcpw") as conn:
        assert uri_of(conn) == replica.uri
        assert conn.whoami_s() == f"dn:{service_dn(2)}"
    assert pooled.authenticate(user_dn(1), "userpw")
    replica.kill()
    with pytest.raises(ldap.SERVER_DOWN):
        with unpooled.connection():
            pass


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (Server("ldapi://127.0.0.1:1"), "scheme"),
        ([Server("127.0.0.1", 1), 5], "Server"),
        ([], "no LDAP server"),
        (ServerPool(), "no LDAP server"),
        (42, "uri"),
        ("ldap://127.0.0.1:1 http://x", "scheme"),
    ],
)
def test_bad_servers_are_refused(given: object, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool(given, SERVICE_DN, "svcpw")  # type: ignore[arg-type]
    assert named in str(info.value)
    assert "svcpw" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"tls": "yes"}, "tls must be a geventpool.ldap.Tls"),
        ({"allowed_referral_hosts": [("127.0.0.1", "yes")]}, "allowed_referral_hosts entries"),
        ({"allowed_referral_hosts": [""]}, "allowed_referral_hosts entries"),
        ({"allowed_referral_hosts": 5}, "allowed_referral_hosts must be"),
    ],
)
def test_bad_server_arguments_are_refused_at_construction(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Server("127.0.0.1", 1, **kwargs)  # type: ignore[arg-type]


def test_servers_keyword_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool("ldap://127.0.0.1:1", servers=["ldap://127.0.0.1:2"])
    assert "uri" in str(info.value)


def test_str_and_stats_show_server_health(replicas: list[Slapd], make_pool: MakePool) -> None:
    pool = make_pool(ServerPool([Server(replicas[0].uri), Server(replicas[1].uri, priority=1)],
                                POOLING_STRATEGY_FIRST_ACTIVE))
    with pool.connection() as conn:
        conn.whoami_s()
    stats = pool.server_stats()
    assert stats[f"127.0.0.1:{replicas[0].port}"]["state"] == "closed"
    assert stats[f"127.0.0.1:{replicas[0].port}"]["connections"] == 1
    assert stats[f"127.0.0.1:{replicas[1].port}"]["priority"] == 1
    table = str(pool)
    assert "servers (FIRST_ACTIVE):" in table
    assert f"{replicas[0].uri} priority=0 circuit=closed connections=1" in table
    assert f"{replicas[1].uri} priority=1 circuit=closed connections=0" in table


def test_an_ldap_server_has_ldap3s_defaults_and_refuses_a_bad_get_info() -> None:
    assert Server("ldap.example.org").port == 389
    assert Server("ldap.example.org", use_ssl=True).port == 636
    assert Server("ldaps://ldap.example.org").port == 636
    assert Server("ldap.example.org").uri == "ldap://ldap.example.org:389"
    with pytest.raises(ConfigurationError, match="get_info"):
        Server("h", get_info="EVERYTHING")
    pool = ServerPool(["ldaps://a.example.org", "b.example.org"])
    assert all(isinstance(s, Server) for s in pool)  # strings become LDAP servers
    assert [s.port for s in pool] == [636, 389]
