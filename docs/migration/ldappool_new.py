"""The new side of the ldappool guide, run by tests/docs against a private slapd.

``python docs/migration/ldappool_new.py`` starts slapd on 127.0.0.1
(geventpool.testing.slapd), runs the code the guide shows and checks what the
guide claims: one ``ok:`` line per claim, exit status 1 if one fails.
"""
# ruff: noqa: I001 (the imports the guide shows come after a marker)

from __future__ import annotations

import gevent

from geventpool.testing import HubMonitor
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, USER_PW, Slapd, user_dn

# [new-code]
import ldap

# was: from ldappool import ConnectionManager, MaxConnectionReachedError
from geventpool.ldap import ConnectionManager, MaxConnectionReachedError

PEOPLE = "ou=people,dc=example,dc=com"


def make_manager(uri):
    # ldappool's arguments, in its order; every timeout is finite here
    return ConnectionManager(uri, bind=SERVICE_DN, passwd=SERVICE_PW, size=10,
                             retry_max=3, retry_delay=0.1, use_tls=False,
                             timeout=10, use_pool=True, max_lifetime=600)


def find_mail(cm, uid):
    with cm.connection() as conn:  # bound as the service account
        result = conn.search_s(PEOPLE, ldap.SCOPE_ONELEVEL,
                               f"(uid={uid})", ["mail"])
    return result[0][1]["mail"][0].decode() if result else None


def whoami_as(cm, dn, password):
    # bound as that user, on connections kept for that identity
    with cm.connection(dn, password) as conn:
        return conn.whoami_s()


def check_password(cm, dn, password):
    # new: a bind on connections set apart for logins; True or False
    return cm.authenticate(dn, password)
# [/new-code]


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def main(server: Slapd) -> None:
    cm = make_manager(server.uri)
    check(find_mail(cm, "user0007") is not None, "a search through the service account's connection")
    check(whoami_as(cm, user_dn(3), USER_PW) == f"dn:{user_dn(3)}", "a connection bound as another DN")

    try:
        with cm.connection(user_dn(3), "wrong password") as conn:
            conn.whoami_s()
    except ldap.INVALID_CREDENTIALS as error:  # what ldappool raised: still caught
        refused = error
    else:
        refused = None
    check(refused is not None, "a wrong password raises ldap.INVALID_CREDENTIALS, as with ldappool")
    check("wrong password" not in str(refused), "the password is in no error message")

    check(check_password(cm, user_dn(5), USER_PW) is True, "authenticate() accepts the right password")
    check(check_password(cm, user_dn(5), "nope") is False, "authenticate() refuses a wrong one")

    # ldappool blocked every greenlet during each LDAP call; here 200 concurrent
    # searches share 10 connections while the hub keeps running.
    with HubMonitor() as hub:
        jobs = [gevent.spawn(find_mail, cm, f"user{n % 20:04d}") for n in range(200)]
        gevent.joinall(jobs, raise_error=True, timeout=60)
    check(all(job.value for job in jobs), "200 concurrent searches through 10 connections")
    print(f"longest hub stall: {hub.max_stall * 1000:.1f} ms")
    check(cm.stats()["pool_size"] <= 10, "never more than size=10 service connections")

    # A full pool: ldappool's error name, after checkout_timeout instead of a fixed retry loop.
    busy = ConnectionManager(server.uri, bind=SERVICE_DN, passwd=SERVICE_PW, size=1, checkout_timeout=0.2)
    with busy.connection():
        try:
            with busy.connection():
                pass
        except MaxConnectionReachedError:
            full = True
        else:
            full = False
    check(full, "MaxConnectionReachedError when no connection frees up in time")

    print(cm)  # ldappool's status table, with more columns
    cm.purge(user_dn(3))  # works with pooling on (a no-op in ldappool)
    cm.close()
    busy.close()
    print("ldappool_new: all checks passed")


if __name__ == "__main__":
    with Slapd(users=20, tls=False) as slapd:
        main(slapd)
