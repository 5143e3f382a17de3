"""One ldap3-style search on a cooperative connection: its arguments, then its messages one by one.

python-ldap's ``search_ext_s`` loses the entries that came before an error
(a size limit reached, say); ldap3 keeps them.  :func:`collect` takes the
messages one at a time, so ``Connection.search`` keeps them too, and follows
referrals by the connection's policy (the pool's rules) as they come.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import gevent
import ldap
from ldap.controls import RequestControl

from ._ldap3_response import make_response, make_result, response_controls
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .referrals import referral_urls

__all__ = ["attribute_list", "request_controls", "collect"]

# Messages of one search processed before yielding to the other greenlets.
_YIELD_EVERY = 64


def collect(
    conn: LDAPConnection, base: str, scope: int, filterstr: str, attrlist: list[str], attrsonly: int,
    serverctrls: list[Any], time_limit: int, size_limit: int, timeout: float,
) -> tuple[list[dict[str, Any]], dict[str, Any], ldap.LDAPError | None]:
    """Send one search on ``conn`` and take its messages one by one, within ``timeout`` seconds.

    Returns ldap3's ``response`` and ``result``, and the server's refusal (an
    ``ldap.LDAPError`` with a result code, for ``raise_exceptions``; None on
    success or a referral) with the entries received before it.

    :raises ldap.LDAPError: a lost connection or ``ldap.TIMEOUT`` (``conn`` is then broken),
        a client-side error (``ldap.FILTER_ERROR``...).
    """
    msgid = conn.search_ext(
        base, scope, filterstr, attrlist, attrsonly, serverctrls or None, None,
        time_limit if time_limit > 0 else -1, size_limit,
    )
    deadline = time.monotonic() + timeout
    found: list[tuple[str | None, Any]] = []
    count = 0
    while True:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            rtype, rdata, _, rctrls, _, _ = conn.result4(msgid, 0, remaining)
        except ldap.LDAPError as error:
            if isinstance(error, LOST_CONNECTION_ERRORS) or not _is_result(error):
                raise
            info = error.args[0]
            urls = referral_urls(error) if isinstance(error, ldap.REFERRAL) else None
            if urls:
                chased = _chase(conn, urls, scope, filterstr, attrlist, attrsonly, timeout)
                if chased is not None:
                    return make_response(chased), make_result(0), None
            result = make_result(
                info["result"], str(info.get("info", "")), str(info.get("matched", "")), urls or None
            )
            return make_response(found), result, None if urls else error
        if rtype == ldap.RES_SEARCH_RESULT:
            result = make_result(0)
            if rctrls:
                result["controls"] = response_controls(rctrls)
            return make_response(found), result, None
        for dn, value in rdata:
            if dn is None:
                urls = [u.decode() if isinstance(u, bytes) else u for u in value]
                sub_scope = ldap.SCOPE_SUBTREE if scope != ldap.SCOPE_BASE else scope
                chased = _chase(conn, urls, sub_scope, filterstr, attrlist, attrsonly, timeout)
                found.extend(chased if chased is not None else [(None, urls)])
            else:
                found.append((dn, value))
        count += 1
        if count % _YIELD_EVERY == 0:
            gevent.sleep(0)  # a long result set must not monopolize the hub


def _chase(
    conn: LDAPConnection, urls: list[str], scope: int, filterstr: str, attrlist: list[str],
    attrsonly: int, timeout: float,
) -> list[Any] | None:
    """Follow ``urls`` as ``conn``'s referral policy allows (None: not followed)."""
    chase = conn.__dict__.get("_referrals")
    if chase is None:
        return None
    policy, settings, credentials, opener = chase
    found: list[Any] | None = policy.chase(
        urls, settings, credentials, scope, filterstr, attrlist, attrsonly, timeout, opener,
    )
    return found


def attribute_list(attributes: str | Sequence[str] | None, operational: bool) -> list[str]:
    """ldap3's ``attributes`` as python-ldap's ``attrlist``: None reads none (``"1.1"``).

    :raises TypeError: a name that is not a str.
    """
    if not attributes:
        names = ["1.1"]
    elif isinstance(attributes, str):
        names = [attributes]
    else:
        names = list(attributes)
        if not all(isinstance(a, str) for a in names):
            raise TypeError(f"attributes must be attribute names (str), got {attributes!r}")
    if operational:
        names = [n for n in names if n != "1.1"] + ["+"]  # every operational attribute
    return names


def request_controls(owner: str, controls: Sequence[Any] | None) -> list[Any]:
    """ldap3's ``(oid, criticality, value)`` tuples (value BER-encoded) or python-ldap controls.

    :raises TypeError: anything else.
    """
    result: list[Any] = []
    for control in controls or ():
        if isinstance(control, RequestControl):
            result.append(control)
        elif isinstance(control, tuple) and len(control) == 3 and isinstance(control[0], str):
            result.append(RequestControl(control[0], bool(control[1]), control[2]))
        else:
            raise TypeError(f"{owner}: a control must be (oid, criticality, value) or a python-ldap "
                            f"RequestControl, got {control!r}")
    return result


def _is_result(error: ldap.LDAPError) -> bool:
    """Whether ``error`` is the server's answer (a result code), not a client-side failure."""
    info = error.args[0] if error.args else None
    return isinstance(info, dict) and isinstance(info.get("result"), int) and info["result"] >= 0
