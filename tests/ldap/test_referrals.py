"""Referrals: never chased by default (credentials stay home); chased only towards allowed hosts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import ldap
import pytest

from geventpool import ConfigurationError
from geventpool.ldap import LDAPPool
from geventpool.testing.slapd import SUFFIX, Slapd, user_dn

MakePool = Callable[..., LDAPPool]


@pytest.fixture
def referring(private_slapd: Slapd) -> Iterator[tuple[Slapd, Slapd]]:
    """private_slapd holds ou=remote, a referral to the people of a second slapd."""
    target = Slapd(users=5).start()
    private_slapd.modify(
        f"dn: ou=remote,{SUFFIX}\nchangetype: add\nobjectClass: referral\nobjectClass: extensibleObject\n"
        f"ou: remote\nref: ldap://127.0.0.1:{target.port}/ou=people,{SUFFIX}\n"
    )
    try:
        yield private_slapd, target
    finally:
        target.close()


def test_referrals_are_not_chased_by_default(referring: tuple[Slapd, Slapd], make_pool: MakePool) -> None:
    source, target = referring
    binds = target.operation_count("Bind")
    cm = make_pool(source.uri)
    with cm.connection() as conn:
        assert conn.get_option(ldap.OPT_REFERRALS) == 0
        with pytest.raises(ldap.REFERRAL):
            conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)")
    assert target.operation_count("Bind") == binds + 1  # only the monitor query's own bind


@pytest.mark.parametrize("allow_auth", [False, True])
def test_allowed_host_is_followed(
    referring: tuple[Slapd, Slapd], make_pool: MakePool, allow_auth: bool
) -> None:
    source, target = referring
    binds = target.operation_count("Bind")
    cm = make_pool(source.uri, allowed_referral_hosts=[("127.0.0.1", allow_auth)])
    with cm.connection() as conn:
        found = conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)", ["uid"])
    assert found == [(user_dn(1), {"uid": [b"user0001"]})]
    # credentials are sent to the referred host only when allow_auth says so
    assert target.operation_count("Bind") == binds + 1 + (1 if allow_auth else 0)


def test_other_hosts_are_not_followed(referring: tuple[Slapd, Slapd], make_pool: MakePool) -> None:
    source, _target = referring
    cm = make_pool(source.uri, allowed_referral_hosts=[("ldap.example.org", True)])
    with cm.connection() as conn:
        with pytest.raises(ldap.REFERRAL):
            conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)")


def test_bad_allowed_hosts_are_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool("ldap://127.0.0.1:1", allowed_referral_hosts=["127.0.0.1"])  # type: ignore[list-item]
    assert "allowed_referral_hosts" in str(info.value)
