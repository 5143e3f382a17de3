"""Rows I3, E3, E4, D12, C2, C3: the hub runs, every wait is bounded, interrupted work is discarded."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Callable

import gevent
import ldap
import pytest

from geventpool import PoolError, PoolTimeout
from geventpool.ldap import LDAPPool
from geventpool.testing import FaultProxy, HubMonitor, fd_count, wait_until
from geventpool.testing.slapd import SERVICE_DN, SUFFIX, Slapd, user_dn

from .conftest import assert_hub_ok

MakePool = Callable[..., LDAPPool]


def test_hub_runs_during_connect_bind_search_tls(
    slapd: Slapd, make_pool: MakePool, hub: HubMonitor
) -> None:
    """I3: opening, binding, searching and TLS (plain, StartTLS, ldaps) never block the hub.

    A few greenlets only: this measures blocking, not a saturated CPU (36
    greenlets each busy for a few ms make any gevent hub late by tens of ms).
    """
    pools = [
        make_pool(slapd.uri, size=2),
        make_pool(slapd.uri, size=2, use_tls=True, tls_ca_file=slapd.ca_file),
        make_pool(slapd.ldaps_uri, size=2, tls_ca_file=slapd.ca_file),
    ]

    def work(pool: LDAPPool, n: int) -> None:
        for _ in range(3):
            with pool.connection() as conn:
                found = conn.search_s(f"ou=people,{SUFFIX}", ldap.SCOPE_ONELEVEL, f"(uid=user00{n}*)")
                assert len(found) == 10
            assert pool.authenticate(user_dn(n), "userpw")

    gevent.joinall([gevent.spawn(work, p, n) for p in pools for n in range(2)], raise_error=True)
    assert_hub_ok(hub)


def test_large_results_let_other_greenlets_run(slapd: Slapd, make_pool: MakePool, hub: HubMonitor) -> None:
    """A 1000-entry search yields to the hub while it gathers entries (gevent bounds the
    loop's turns between yields to its switch interval, 5 ms by default)."""
    cm = make_pool(slapd.uri, size=1)
    with cm.connection() as conn:
        assert len(conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(objectClass=inetOrgPerson)")) == 1000
    assert_hub_ok(hub)


def test_paused_server_times_out_the_operation_not_the_hub(
    private_slapd: Slapd, make_pool: MakePool, hub: HubMonitor
) -> None:
    """D12: SIGSTOP mid-search: ldap.TIMEOUT at the operation timeout; the connection is discarded."""
    cm = make_pool(private_slapd.uri, size=2, timeout=0.5)
    with cm.connection() as conn:
        conn.whoami_s()
    private_slapd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(ldap.TIMEOUT):
            with cm.connection() as conn:
                stale = conn
                conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(uid=user0001)")
        assert 0.45 < time.monotonic() - started < 1.5
        assert stale.closed
        assert_hub_ok(hub)
    finally:
        private_slapd.resume()
    # the late answer to the abandoned search never reaches the next user
    with cm.connection() as conn:
        assert conn is not stale
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        found = conn.search_s(user_dn(2), ldap.SCOPE_BASE, attrlist=["uid"])
        assert found == [(user_dn(2), {"uid": [b"user0002"]})]


@pytest.mark.parametrize("uri_kind", ["plain", "starttls", "ldaps"])
def test_connect_to_a_paused_server_is_bounded(
    private_slapd: Slapd, hub: HubMonitor, uri_kind: str
) -> None:
    """E3/E4 with a frozen slapd: TCP accepts (kernel backlog), nothing answers; TLS waits in a thread."""
    uri = private_slapd.ldaps_uri if uri_kind == "ldaps" else private_slapd.uri
    cm = LDAPPool(uri, SERVICE_DN, "svcpw", use_tls=uri_kind == "starttls", tls_ca_file=private_slapd.ca_file,
                  connect_timeout=0.3, retry_max=1, checkout_timeout=1.0, timeout=0.3)
    private_slapd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            with cm.connection():
                pass
        assert time.monotonic() - started < 2.5
        assert_hub_ok(hub)
    finally:
        private_slapd.resume()
        cm.close(timeout=1)
    # the server's health is shared by every pool of the process: its circuit opened; a closed
    # pool probes nothing, the next pool's probe (or the end of the cool-down) lets it in
    assert cm.server_pool is not None
    servers = list(cm.server_pool)
    again = LDAPPool(uri, SERVICE_DN, "svcpw", use_tls=uri_kind == "starttls",
                     tls_ca_file=private_slapd.ca_file)
    try:
        with contextlib.suppress(PoolError), again.connection():
            pass  # its first checkout starts it and registers its probe (fails fast while open)
        # closed = the probe (a fresh connection and a rootDSE read) succeeded again
        wait_until(lambda: all(s.health.state == "closed" for s in servers), timeout=15)
        with again.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    finally:
        again.close()


def test_deaf_listener_fails_at_connect_timeout(slapd: Slapd, hub: HubMonitor) -> None:
    """E4: connects hang (backlog full); each attempt ends at connect_timeout; no fd leaks."""
    with FaultProxy(upstream=("127.0.0.1", slapd.port)) as proxy:
        proxy.set_mode("deaf")
        before = fd_count()
        cm = LDAPPool(f"ldap://127.0.0.1:{proxy.port}", SERVICE_DN, "svcpw", connect_timeout=0.2, retry_max=2,
                      retry_delay=0.01, checkout_timeout=0.8)
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as info:
            with cm.connection():
                pass
        assert time.monotonic() - started < 1.5
        assert info.value.__cause__ is not None
        cm.close(timeout=1)
        assert_hub_ok(hub)
    wait_until(lambda: fd_count() <= before, timeout=5)


def test_blackholed_connection_times_out(slapd: Slapd, make_pool: MakePool, hub: HubMonitor) -> None:
    """E3: an established connection goes silent: the operation fails at its timeout, not the kernel's."""
    with FaultProxy(upstream=("127.0.0.1", slapd.port)) as proxy:
        cm = make_pool(f"ldap://127.0.0.1:{proxy.port}", size=1, timeout=0.3)
        with cm.connection() as conn:
            conn.whoami_s()
        proxy.set_mode("blackhole")
        started = time.monotonic()
        with pytest.raises(ldap.TIMEOUT):
            with cm.connection() as conn:
                conn.search_s(user_dn(1), ldap.SCOPE_BASE)
        assert time.monotonic() - started < 1.0
        assert cm.stats()["connections_lost"] == 1
        proxy.set_mode("pass")
        with cm.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        assert_hub_ok(hub)


def test_gevent_timeout_mid_operation_discards(
    private_slapd: Slapd, make_pool: MakePool, hub: HubMonitor
) -> None:
    """C3: a gevent.Timeout (or a kill) during an operation abandons it and discards the connection."""
    cm = make_pool(private_slapd.uri, size=2, min_size=2)
    cm.wait(5)
    private_slapd.pause()
    try:
        timer = gevent.Timeout(0.1)
        with pytest.raises(gevent.Timeout) as info:
            with timer:
                with cm.connection() as conn:
                    victim = conn
                    conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(uid=user0001)")
        assert info.value is timer
        assert victim.closed

        def search() -> None:
            with cm.connection() as conn:
                conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(uid=user0002)")

        job = gevent.spawn(search)
        wait_until(lambda: cm.stats()["pool_in_use"] == 1, timeout=5)
        job.kill(block=True, timeout=2)
        assert (job.dead and isinstance(job.value, gevent.GreenletExit)) or job.exception is None
        assert cm.stats()["connections_discarded"] == 2
        assert_hub_ok(hub)
    finally:
        private_slapd.resume()
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_kill_during_connect_frees_the_slot(private_slapd: Slapd, hub: HubMonitor) -> None:
    """C2: a checkout abandoned while the connection is being opened loses no slot and no fd."""
    before = fd_count()
    cm = LDAPPool(private_slapd.uri, SERVICE_DN, "svcpw", size=1, connect_timeout=0.3, retry_max=1,
                  checkout_timeout=0.2)
    private_slapd.pause()
    try:
        with pytest.raises(PoolTimeout):
            with cm.connection():
                pass
    finally:
        private_slapd.resume()
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    cm.close(timeout=1)
    assert_hub_ok(hub)
    wait_until(lambda: fd_count() <= before, timeout=5)


@pytest.fixture(scope="module")
def big_slapd() -> Iterator[Slapd]:
    with Slapd(users=10_000, tls=True) as server:
        yield server


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """A gen-2 collection walks the whole process's heap, whatever triggered it (here the caller's
    own 10,000 entries): the pool cannot bound it, so the heartbeat measures the pool's own work with
    the collector off (README's advice for big results: gc.freeze() after start-up)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.mark.parametrize("tls", [False, True])
def test_a_ten_thousand_entry_search_never_stalls_the_hub(
    big_slapd: Slapd, make_pool: MakePool, tls: bool
) -> None:
    """Issue 12, item 6: entries are taken from libldap one message per call, and the search yields
    every few dozen; libldap never parses a whole buffered result in one C call."""
    cm = make_pool(big_slapd.uri, size=1, use_tls=tls, tls_ca_file=big_slapd.ca_file)
    with cm.connection() as conn:
        conn.whoami_s()
    with _no_gc(), HubMonitor(interval=0.002) as hub:
        with cm.connection() as conn:
            found = conn.search_s(f"ou=people,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["uid"])
        assert len(found) == 10_000
        del found
    assert_hub_ok(hub)


def test_a_paged_search_never_stalls_the_hub(big_slapd: Slapd, make_pool: MakePool) -> None:
    from ldap.controls import SimplePagedResultsControl

    cm = make_pool(big_slapd.uri, size=1)
    seen = 0
    with _no_gc(), HubMonitor(interval=0.002) as hub:
        with cm.connection() as conn:
            page = SimplePagedResultsControl(True, size=1000, cookie="")
            while True:
                msgid = conn.search_ext(
                    f"ou=people,{SUFFIX}", ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["uid"], serverctrls=[page]
                )
                _type, data, _msgid, controls = conn.result3(msgid)
                seen += len(data)
                paged = SimplePagedResultsControl.controlType
                cookie = next(c.cookie for c in controls if c.controlType == paged)
                if not cookie:
                    break
                page.cookie = cookie
    assert seen == 10_000
    assert_hub_ok(hub)
