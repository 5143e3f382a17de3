"""The documentation's snippets (examples/ldapapi_*.py) run as scripts, each against its own slapd."""

from __future__ import annotations

import os
import sys

import pytest
from gevent import subprocess

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


@pytest.mark.parametrize(
    "script, expected",
    [
        ("ldapapi_basic.py", ["Connected successfully!", "basic: bound as dn:uid=svc1",
                              "production: connected=True encryption=ssl", "production: mail user0003@",
                              "healthy, cleaned up"]),
        ("ldapapi_ha.py", ["connected to the primary: True", "served by the secondary: True",
                           "failback done: True", "failed operations: 0"]),
        ("ldapapi_config.py", ["environment (by hand): connected=True",
                               "environment (from_env): connected=True encryption=starttls",
                               "json file: connected=True; to_dict() shows the password: False",
                               "unknown key(s) 'base_dn'", "valid=False, 3 problems"]),
        ("ldapapi_errors.py", ["auth_error: AuthenticationFailed", "connection_error: ConnectionUnhealthy",
                               "PoolExhausted", "PoolTimeout", "block error propagated: ValueError",
                               "best practices: 5 of 5"]),
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
    assert "svcpw" not in out.replace("LDAP_SERVICE_PASSWORD", ""), out
