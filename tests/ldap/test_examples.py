"""The LDAP examples run as scripts, each against the private slapd it starts itself."""

from __future__ import annotations

import os
import sys

import pytest
from gevent import subprocess

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


@pytest.mark.parametrize(
    "script, expected",
    [
        ("ldap_readme.py", ["bound as dn:uid=svc1", "user identity: dn:uid=user0007", "Bind DN"]),
        ("ldap_authenticator.py", ["300 logins", "200 accepted, 100 refused", "longest hub stall"]),
        ("ldap_tls.py", ["StartTLS: dn:uid=svc1", "ldaps: dn:uid=svc1", "wrong CA refused"]),
    ],
)
def test_example_runs(script: str, expected: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    for text in expected:
        assert text in out, out
    assert "Traceback" not in out, out
