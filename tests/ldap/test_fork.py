"""Row I1: after fork, a child drops inherited LDAP connections without touching them and opens its own."""

from __future__ import annotations

import os
from typing import Callable

import gevent
import gevent.os
import ldap

from geventpool.ldap import LDAPPool
from geventpool.testing.slapd import SERVICE_DN, Slapd, user_dn

MakePool = Callable[..., LDAPPool]


def test_children_never_share_the_parents_connections(slapd: Slapd, make_pool: MakePool) -> None:
    cm = make_pool(slapd.uri, size=3, min_size=3)
    cm.wait(5)
    with cm.connection() as conn:
        parent_conn = conn
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    children = []
    for n in range(3):
        pid = gevent.fork()
        if pid == 0:  # the child: exit code 0 on success
            code = 1
            try:
                with cm.connection() as conn:
                    ok = conn is not parent_conn and conn.whoami_s() == f"dn:{SERVICE_DN}"
                    found = conn.search_s(user_dn(n), ldap.SCOPE_BASE, attrlist=["uid"])
                    code = 0 if ok and found[0][0] == user_dn(n) else 2
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = gevent.os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # the parent's sessions still work: no child unbound or wrote on them
    for _ in range(3):
        with cm.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert cm.stats()["connections_discarded"] == 0
