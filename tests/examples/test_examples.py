"""Run every example script as its own process and check what it prints.

Each script talks only to its own in-process server on 127.0.0.1 and checks
its own claims (an ``ok: ...`` line each); a script exits non-zero when a
claim fails.  Here: exit status 0, the expected lines, and no traceback
(an uncaught greenlet error is printed with one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geventpool.testing.postgres import find_bin_dir

__all__: list[str] = []

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 60  # seconds per script; each takes a few

#: script -> (arguments, lines its output must contain)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "core_ping_pong.py": (
        [],
        [
            "ok: the pool opened 20 connections",
            "ok: 500 PINGs answered through 20 connections",
            "ok: the broken connection was discarded and replaced",
            "core_ping_pong: all checks passed",
        ],
    ),
    "core_starttls_login.py": (
        [],
        [
            "ok: the pooled connection is encrypted",
            "ok: each of the 4 connections did STARTTLS and logged in once",
            "ok: without TLS on the server, the same code logs in in clear",
            "ok: the cause is the error raised by _new_connection",
            "ok: the password appears in no message",
            "core_starttls_login: all checks passed",
        ],
    ),
    "core_keepalive.py": (
        [],
        [
            "ok: SO_KEEPALIVE is set on the pooled socket",
            "ok: the pings ran in the background, without any caller's checkout",
            "ok: the next caller gets a working connection, no error",
            "core_keepalive: all checks passed",
        ],
    ),
    "core_exc_classes.py": (
        [],
        [
            "ok: an ordinary exception returns the connection to the pool",
            "ok: ProtocolError is in exc_classes: the connection is discarded",
            "ok: with the default exc_classes the same ProtocolError keeps the connection",
            "core_exc_classes: all checks passed",
        ],
    ),
    "core_retry.py": (
        [],
        [
            "ok: @retry: 2 resets, then the 3rd attempt succeeded",
            "INFO example.retry: Connection broken in 'senddata_logged'",
            "retrying with new connection.",
            "ERROR example.retry: Max retries reached for 'senddata_impatient'. Aborting.",
            "ok: max_failures=2: 3 attempts, then the error",
            "core_retry: all checks passed",
        ],
    ),
    "demo.py": (
        ["--quick", "--no-live"],
        [
            "pool filled; starting 100 greenlets on tcp",
            "tcp: primary server killed: 10 connections reset, listener closed",
            "tcp: primary server restarted on 127.0.0.1:",
            "tcp: every connection reset (RST) by the proxies",
            "tcp: network stall: both proxies hold all traffic",
            "sqlite: an outside writer holds the write lock",
            "failed calls: 0 (expected 0)",
            "failover: up to ",
            "times: all held",
            "| Slot | State",  # the status table (its widths follow its content)
            "Holder |",
            "pool.stats():",
            "demo: OK, no call failed",
        ],
    ),
}


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def test_every_example_is_run() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    core = {name for name in scripts if name.startswith("core_") or name == "demo.py"}
    assert core <= set(EXPECTED), f"examples without a test: {sorted(core - set(EXPECTED))}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name: str) -> None:
    args, lines = EXPECTED[name]
    result = run_script(name, *args)
    assert result.returncode == 0, describe(result)
    for line in lines:
        assert line in result.stdout, f"missing {line!r}\n{describe(result)}"
    assert "Traceback" not in result.stdout + result.stderr, describe(result)


def test_demo_uses_slapd_and_postgres_when_installed() -> None:
    # the same run as test_example["demo.py"] would be slower twice: check its extra lines here
    result = run_script("demo.py", "--quick", "--no-live")
    assert result.returncode == 0, describe(result)
    if shutil.which("slapd") or os.path.exists("/usr/sbin/slapd"):
        assert "ldap: slapd restarted on ldap://127.0.0.1:" in result.stdout, describe(result)
    else:
        assert "ldap: slapd not installed" in result.stdout, describe(result)
    try:
        find_bin_dir()
    except FileNotFoundError:
        assert "postgres: not installed" in result.stdout, describe(result)
    else:
        assert "postgres: every session terminated" in result.stdout, describe(result)


def test_demo_exits_nonzero_when_calls_fail() -> None:
    # tcp callers wait at most 0.2 s for a connection, less than the 0.5 s network
    # stall: the calls waiting then fail with PoolTimeout (not retried).  --live:
    # the table is redrawn in place with ANSI escapes, and the cursor restored.
    result = run_script("demo.py", "--quick", "--embedded", "--live", "--pool-timeout", "0.2")
    assert result.returncode == 1, describe(result)
    assert "calls failed, first: PoolTimeout" in result.stdout, describe(result)
    assert "demo: OK" not in result.stdout, describe(result)
    assert "\x1b[?25l\x1b[H\x1b[2J" in result.stdout, describe(result)  # first frame: clear screen
    assert re.search(r"\x1b\[\d+F", result.stdout), describe(result)  # later frames: back up, redraw
    assert "TCP SERVER" in result.stdout and "CIRCUIT" in result.stdout, describe(result)
    assert "not used: slapd, PostgreSQL: --embedded" in result.stdout, describe(result)
    assert "\x1b[?25h" in result.stdout, describe(result)  # the cursor is shown again
