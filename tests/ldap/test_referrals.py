"""Referrals: never chased by default (credentials stay home); chased only towards allowed hosts."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import ldap
import pytest

from geventpool import ConfigurationError
from geventpool.ldap import LDAPPool, Server
from geventpool.testing.slapd import SERVICE_PW, SUFFIX, Slapd, user_dn

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


@pytest.mark.parametrize("allowed", [["127.0.0.1"], "*", ["ldap.example.org", "127.0.0.1"], [("*", False)]])
def test_ldap3_forms_follow_without_credentials(
    referring: tuple[Slapd, Slapd], make_pool: MakePool, allowed: object
) -> None:
    """ldap3's documented forms: host names, or '*' for any host; neither sends the credentials."""
    source, target = referring
    binds = target.operation_count("Bind")
    server = Server(source.uri, allowed_referral_hosts=allowed)  # type: ignore[arg-type]
    cm = make_pool(server)
    with cm.connection() as conn:
        found = conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)", ["uid"])
    assert found == [(user_dn(1), {"uid": [b"user0001"]})]
    assert target.operation_count("Bind") == binds + 1  # operation_count's own: no bind of ours


def test_ldap3_page_example_builds_a_pool() -> None:
    """The ldap3 page's own example (port 636 with use_ssl, a list of host names)."""
    server = Server("server1", port=636, use_ssl=True, allowed_referral_hosts=["server2", "server3"])
    assert server.port == 636 and server.allowed_referral_hosts == [("server2", False), ("server3", False)]
    cm = LDAPPool(server, min_size=0)  # nothing connects: server1 is never looked up
    cm.close()


@pytest.mark.parametrize("allowed", [[("127.0.0.1", "yes")], [""], 5, [None]])
def test_bad_allowed_hosts_are_refused(allowed: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        LDAPPool("ldap://127.0.0.1:1", allowed_referral_hosts=allowed)  # type: ignore[arg-type]
    assert "allowed_referral_hosts" in str(info.value)


@pytest.fixture
def tls_referring() -> Iterator[tuple[Slapd, Slapd]]:
    """A TLS slapd whose ou=remote refers, with a plain ldap:// URL, to a slapd without TLS."""
    source = Slapd(users=5).start()
    target = Slapd(users=5, tls=False).start()
    source.modify(
        f"dn: ou=remote,{SUFFIX}\nchangetype: add\nobjectClass: referral\nobjectClass: extensibleObject\n"
        f"ou: remote\nref: ldap://127.0.0.1:{target.port}/ou=people,{SUFFIX}\n"
    )
    try:
        yield source, target
    finally:
        target.close()
        source.close()


@pytest.mark.parametrize("how", ["ldaps", "starttls"])
def test_a_tls_pool_never_follows_a_referral_in_clear_text(
    tls_referring: tuple[Slapd, Slapd], make_pool: MakePool, how: str
) -> None:
    """Issue 12, item 2: the referral says ldap://, the referred server offers no TLS: the pool's
    credentials (allow_auth) must not reach it in clear text: the referral is left unchased."""
    source, target = tls_referring
    binds = target.operation_count("Bind")
    uri = source.ldaps_uri if how == "ldaps" else source.uri
    cm = make_pool(uri, use_tls=how == "starttls", tls_ca_file=source.ca_file,
                   allowed_referral_hosts=[("127.0.0.1", True)])
    with cm.connection() as conn:
        with pytest.raises(ldap.REFERRAL):
            conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)")
    assert target.operation_count("Bind") == binds + 1  # only the monitor query's own bind


def test_a_tls_pool_follows_an_ldap_referral_with_starttls(
    referring: tuple[Slapd, Slapd], make_pool: MakePool, tmp_path: Path
) -> None:
    """The referred server does offer StartTLS (a CA the pool trusts): the chase upgrades, binds there."""
    source, target = referring
    both = tmp_path / "cas.pem"
    both.write_text(Path(source.ca_file).read_text() + Path(target.ca_file).read_text())
    binds = target.operation_count("Bind")
    tls_ops = target.operation_count("Extended")
    cm = make_pool(source.ldaps_uri, use_tls=False, tls_ca_file=str(both),
                   allowed_referral_hosts=[("127.0.0.1", True)])
    with cm.connection() as conn:
        found = conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)", ["uid"])
    assert found == [(user_dn(1), {"uid": [b"user0001"]})]
    assert target.operation_count("Extended") >= tls_ops + 1  # StartTLS before the bind
    assert target.operation_count("Bind") >= binds + 2  # ours (over TLS) and the count's own


def test_no_frame_of_a_stalled_chase_holds_the_password(
    referring: tuple[Slapd, Slapd], make_pool: MakePool
) -> None:
    """The referred host stalls during the bind: the caller's timeout traceback, formatted with
    every frame's locals (as Sentry does), shows no password."""
    source, target = referring
    cm = make_pool(source.uri, allowed_referral_hosts=[("127.0.0.1", True)], timeout=5)
    target.pause()
    try:
        with cm.connection() as conn:
            conn.timeout = 0.5
            with pytest.raises(ldap.LDAPError) as raised:
                conn.search_s(f"ou=remote,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(uid=user0001)")
    finally:
        target.resume()
    shown = "".join(traceback.TracebackException.from_exception(raised.value, capture_locals=True).format())
    assert SERVICE_PW not in shown
