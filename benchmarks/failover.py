"""LDAP failover: kill the serving replica under steady load, and measure what the callers see.

Each implementation runs in its own worker subprocess (``gevent.monkey.patch_all()``
first) against a fresh pair of private slapd instances (a primary and a replica,
same data).  50 greenlets loop on a base search of one entry through a pool of 10
connections; after ``--before`` seconds of steady load the worker kills the primary
(SIGKILL: the serving replica for the ordered pools, one of the two for round robin)
and keeps the load on for ``--after`` seconds.  Every call is recorded (start, end,
success), and the parent reports, per implementation:

- steady throughput, and the p99 latency of the steady phase;
- ``first ok``: from the kill to the first success of a call *started after* the
  kill (the service works again for new requests);
- ``50% rate``: from the kill to the first 100 ms bucket with at least half the
  steady throughput;
- failed calls (after the implementation's own retries, if any);
- p99 and max latency of the calls started in the two seconds after the kill;
- ``slow later``: calls started more than one second after the kill (the dead
  server is known by then) that took longer than one connect timeout: requests
  still waiting on the dead server;
- the hub's longest stall (a heartbeat greenlet in the worker).

Then the timeline as a small text chart (ops/s per 100 ms bucket, ``|`` at the
kill, ``x`` where calls failed), ``benchmarks/results/failover.md`` and, with
matplotlib, ``benchmarks/results/failover.png``.  The targets of issue 5 are
checked for the geventpool rows.

    .venv/bin/python benchmarks/failover.py            # every implementation (~1.5 min)
    .venv/bin/python benchmarks/failover.py --quick    # shorter windows (smoke run)

Implementations (connect timeout 1 s and operation timeout 2 s everywhere):

- ``geventpool``: ``LDAPPool("ldap://primary ldap://replica", size=10)`` (ldappool's
  URI list: ``POOLING_STRATEGY_FIRST_ACTIVE``, shared health, circuit breaker), one
  attempt per server, no retry by the caller;
- ``geventpool+retry``: the same, each read under ``@retry`` (idempotent);
- ``ldap3-reusable``: ``ServerPool([primary, replica], ROUND_ROBIN, active=True)``,
  one ``REUSABLE`` connection with ``pool_size=10``;
- ``ldap3-safesync``: the same ``ServerPool``, 10 ``SAFE_SYNC`` connections in a
  queue; a connection that fails is replaced by a new one on its next use;
- ``ldappool``: ``ConnectionManager("ldap://primary ldap://replica", size=10)``
  (its defaults: ``retry_max=3``, ``retry_delay=0.1``).

The peers come from benchmarks/ldap.py's set-up (benchmarks/.peers/ldap-lib).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["IMPLEMENTATIONS", "main", "worker", "summarize", "chart_line"]

HERE = Path(__file__).resolve().parent
# Run as a script, this directory comes first on sys.path and benchmarks/ldap.py would
# shadow python-ldap: take the directory out.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
RESULTS = HERE / "results"
IMPLEMENTATIONS = ["geventpool", "geventpool+retry", "ldap3-reusable", "ldap3-safesync", "ldappool"]
SERVICE_DN = "uid=svc1,ou=services,dc=example,dc=com"
SERVICE_PW = "svcpw"
POOL_SIZE = 10
GREENLETS = 50
USERS = 100
CONNECT_TIMEOUT = 1.0
OP_TIMEOUT = 2.0
BUCKET = 0.1
BARS = " ▁▂▃▄▅▆▇█"


def _bench_ldap() -> Any:
    """benchmarks/ldap.py as a module (its peer set-up); loaded by path: its name shadows python-ldap."""
    spec = importlib.util.spec_from_file_location("_bench_ldap", HERE / "ldap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- worker (one implementation, in its own process) ----------------------------------------------


def _user_dn(n: int) -> str:
    return f"uid=user{n % USERS:04d},ou=people,dc=example,dc=com"


def _setup(name: str, primary: int, replica: int) -> Any:
    """Return ``op(n)``: one search through implementation ``name``; raises on failure."""
    import gevent.queue
    import ldap

    uris = f"ldap://127.0.0.1:{primary} ldap://127.0.0.1:{replica}"
    if name.startswith("geventpool"):
        from geventpool import retry
        from geventpool.ldap import LOST_CONNECTION_ERRORS, LDAPPool

        pool = LDAPPool(uris, SERVICE_DN, SERVICE_PW, size=POOL_SIZE, min_size=POOL_SIZE, retry_max=1,
                        connect_timeout=CONNECT_TIMEOUT, timeout=OP_TIMEOUT, checkout_timeout=10,
                        keepalive_timeout=CONNECT_TIMEOUT)
        pool.wait(30)

        def op(n: int) -> None:
            with pool.connection() as conn:
                conn.search_s(_user_dn(n), ldap.SCOPE_BASE)

        if name == "geventpool+retry":
            return retry(exc_classes=LOST_CONNECTION_ERRORS, max_failures=5, interval=0.01, jitter=1.0,
                         retry_log_level=5)(op)
        return op
    if name == "ldappool":
        from ldappool import ConnectionManager

        cm = ConnectionManager(uris, SERVICE_DN, SERVICE_PW, size=POOL_SIZE, timeout=OP_TIMEOUT)

        def op(n: int) -> None:
            with cm.connection() as conn:
                conn.search_s(_user_dn(n), ldap.SCOPE_BASE)

        return op
    import ldap3

    servers = [ldap3.Server("127.0.0.1", port=p, connect_timeout=CONNECT_TIMEOUT) for p in (primary, replica)]
    server_pool = ldap3.ServerPool(servers, ldap3.ROUND_ROBIN, active=True)
    if name == "ldap3-reusable":
        shared = ldap3.Connection(server_pool, SERVICE_DN, SERVICE_PW, client_strategy=ldap3.REUSABLE,
                                  pool_size=POOL_SIZE, pool_lifetime=3600, receive_timeout=int(OP_TIMEOUT))
        shared.bind()

        def op(n: int) -> None:
            msgid = shared.search(_user_dn(n), "(objectClass=*)", search_scope=ldap3.BASE,
                                  attributes=ldap3.ALL_ATTRIBUTES)
            _response, result = shared.get_response(msgid)
            if result is None or result.get("result") != 0:
                raise RuntimeError(f"search failed: {result!r}")

        return op
    if name == "ldap3-safesync":
        def connect() -> Any:
            return ldap3.Connection(server_pool, SERVICE_DN, SERVICE_PW, client_strategy=ldap3.SAFE_SYNC,
                                    auto_bind=True, receive_timeout=int(OP_TIMEOUT))

        conns: gevent.queue.Queue[Any] = gevent.queue.Queue()
        for _ in range(POOL_SIZE):
            conns.put(connect())

        def op(n: int) -> None:
            conn = conns.get()
            try:
                if conn is None:
                    conn = connect()
                status, result, _response, _request = conn.search(
                    _user_dn(n), "(objectClass=*)", search_scope=ldap3.BASE, attributes=ldap3.ALL_ATTRIBUTES
                )
                if not status:
                    raise RuntimeError(f"search failed: {result!r}")
            except BaseException:
                if conn is not None:
                    try:
                        conn.unbind()
                    except Exception:
                        pass
                conn = None  # replaced on its next use
                raise
            finally:
                conns.put(conn)

        return op
    raise SystemExit(f"unknown implementation {name!r}")


def worker(
    name: str, primary: int, replica: int, kill_pid: int, before: float, after: float
) -> dict[str, Any]:
    """Load, kill ``kill_pid`` after ``before`` s, go on for ``after`` s; every call's (start, end, ok)."""
    import gevent

    from geventpool.testing import HubMonitor

    op = _setup(name, primary, replica)
    for n in range(20):  # warm-up
        op(n)
    calls: list[tuple[float, float, int]] = []
    errors: dict[str, int] = {}
    killed = [0.0]
    started = time.monotonic()
    deadline = started + before + after

    def loop(start: int) -> None:
        n = start
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                op(n)
            except Exception as error:
                calls.append((t0, time.monotonic(), 0))
                key = type(error).__name__
                errors[key] = errors.get(key, 0) + 1
            else:
                calls.append((t0, time.monotonic(), 1))
            n += GREENLETS
            gevent.sleep(0)

    def killer() -> None:
        gevent.sleep(max(started + before - time.monotonic(), 0.0))
        killed[0] = time.monotonic()
        os.kill(kill_pid, signal.SIGKILL)

    with HubMonitor(interval=0.005) as hub:
        jobs = [gevent.spawn(loop, i) for i in range(GREENLETS)]
        gevent.spawn(killer)
        gevent.joinall(jobs, raise_error=True)
        gevent.sleep(0.02)
        stall = hub.max_stall
    base = killed[0] or started + before
    return {
        "name": name,
        "calls": [(round(s - base, 5), round(e - base, 5), ok) for s, e, ok in calls],
        "errors": errors,
        "stall_ms": stall * 1000.0,
        "before": before,
        "after": after,
    }


# -- analysis ----------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def buckets(result: dict[str, Any]) -> tuple[list[float], list[int]]:
    """Successes per second and failures, per 100 ms bucket of completion time, from -before to +after."""
    before, after = result["before"], result["after"]
    count = round((before + after) / BUCKET)
    ok = [0.0] * count
    failed = [0] * count
    for _start, end, success in result["calls"]:
        index = int((end + before) / BUCKET)
        if 0 <= index < count:
            if success:
                ok[index] += 1 / BUCKET
            else:
                failed[index] += 1
    return ok, failed


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run (see the module docstring)."""
    calls = result["calls"]
    steady = [(s, e) for s, e, ok in calls if ok and e < 0 and s > -result["before"] + 0.5]
    steady_span = result["before"] - 0.5
    steady_ops = len(steady) / steady_span if steady_span > 0 else float("nan")
    steady_p99 = _percentile([e - s for s, e in steady], 0.99)
    first_ok = min((e for s, e, ok in calls if ok and s >= 0), default=float("nan"))
    ok_per_s, _failed = buckets(result)
    zero = round(result["before"] / BUCKET)
    half = next((i - zero for i in range(zero, len(ok_per_s)) if ok_per_s[i] >= 0.5 * steady_ops), None)
    window = [e - s for s, e, _ok in calls if 0 <= s < 2.0]
    slow_later = sum(1 for s, e, _ok in calls if s >= 1.0 and e - s > CONNECT_TIMEOUT)
    return {
        "name": result["name"],
        "steady_ops": steady_ops,
        "steady_p99_ms": steady_p99 * 1000,
        "first_ok_ms": first_ok * 1000,
        "half_rate_ms": float("nan") if half is None else (half + 1) * BUCKET * 1000,
        "failed": sum(1 for _s, _e, ok in calls if not ok),
        "errors": result["errors"],
        "failover_p99_ms": _percentile(window, 0.99) * 1000,
        "failover_max_ms": max(window, default=float("nan")) * 1000,
        "slow_later": slow_later,
        "stall_ms": result["stall_ms"],
    }


def targets(row: dict[str, Any]) -> list[tuple[str, bool]]:
    """Issue 5's targets, for a geventpool row."""
    checks = [
        (f"first success within one connect timeout ({CONNECT_TIMEOUT * 1000:.0f} ms)",
         row["first_ok_ms"] <= CONNECT_TIMEOUT * 1000),
        ("no request waits on the dead server once it is known (slow later = 0)", row["slow_later"] == 0),
        ("p99 during failover <= 2 x steady p99 + one connect timeout",
         row["failover_p99_ms"] <= 2 * row["steady_p99_ms"] + CONNECT_TIMEOUT * 1000),
    ]
    if row["name"] == "geventpool+retry":
        checks.insert(1, ("zero failed calls with @retry", row["failed"] == 0))
    return checks


def chart_line(result: dict[str, Any], scale: float) -> tuple[str, str]:
    """Two text lines: ops/s per 100 ms bucket (``|`` at the kill), and the buckets with failures (``x``)."""
    ok, failed = buckets(result)
    zero = round(result["before"] / BUCKET)
    bars = []
    marks = []
    for i, value in enumerate(ok):
        level = 0 if scale <= 0 else min(len(BARS) - 1, round(value / scale * (len(BARS) - 1)))
        if value > 0 and level == 0:
            level = 1
        bars.append(BARS[level])
        marks.append("x" if failed[i] else " ")
    bars.insert(zero, "|")
    marks.insert(zero, "|")
    return "".join(bars), "".join(marks)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = (f"{'implementation':<17} {'steady ops/s':>12} {'steady p99':>10} {'first ok':>9} "
              f"{'50% rate':>9} {'failed':>6} {'p99 0-2s':>9} {'max 0-2s':>9} {'slow later':>10} "
              f"{'hub stall':>9}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['name']:<17} {row['steady_ops']:>12.0f} {row['steady_p99_ms']:>8.1f}ms "
            f"{row['first_ok_ms']:>7.0f}ms {row['half_rate_ms']:>7.0f}ms {row['failed']:>6} "
            f"{row['failover_p99_ms']:>7.0f}ms {row['failover_max_ms']:>7.0f}ms {row['slow_later']:>10} "
            f"{row['stall_ms']:>7.0f}ms"
        )
    return lines


def _chart(results: list[dict[str, Any]]) -> list[str]:
    width = max(len(r["name"]) for r in results)
    lines = [f"ops/s per {BUCKET * 1000:.0f} ms bucket (each row scaled to its own peak; | = kill, "
             f"x = failed calls in that bucket)"]
    for result in results:
        ok, _failed = buckets(result)
        bars, marks = chart_line(result, max(ok, default=0.0))
        lines.append(f"{result['name']:<{width}}  {bars}  peak {max(ok, default=0):.0f}/s")
        if marks.strip(" |"):
            lines.append(f"{'':<{width}}  {marks}")
    before, after = results[0]["before"], results[0]["after"]
    left = f"-{before:g} s"
    right = f"+{after:g} s"
    lines.append(f"{'':<{width}}  {left:<{round(before / BUCKET)}}kill"
                 f"{right:>{max(round(after / BUCKET) - 3, len(right))}}")
    return lines


def _png(results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[3, 1])
    for result in results:
        ok, failed = buckets(result)
        xs = [-result["before"] + (i + 0.5) * BUCKET for i in range(len(ok))]
        width = 2.5 if result["name"].startswith("geventpool") else 1.2
        top.plot(xs, ok, label=result["name"], linewidth=width)
        bottom.plot(xs, failed, label=result["name"], linewidth=width)
    for axis in (top, bottom):
        axis.axvline(0.0, color="black", linestyle="--", linewidth=1,
                     label="serving replica killed" if axis is top else None)
        axis.grid(alpha=0.3)
    top.set_ylabel("successful calls/s")
    top.set_title("LDAP: the serving replica killed (SIGKILL) at t=0; 50 greenlets, pool of 10")
    top.legend(loc="lower left", fontsize=8)
    bottom.set_ylabel("failed calls\nper 100 ms")
    bottom.set_xlabel("time from the kill, seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- parent ---------------------------------------------------------------------------------------------


def _run(name: str, before: float, after: float, peers_lib: Path) -> dict[str, Any]:
    from geventpool.testing.slapd import Slapd

    with Slapd(users=USERS, tls=False) as primary, Slapd(users=USERS, tls=False) as replica:
        assert primary.pid is not None
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(peers_lib), str(ROOT)]))
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--primary", str(primary.port), "--replica",
             str(replica.port), "--kill-pid", str(primary.pid), "--before", str(before),
             "--after", str(after)],
            capture_output=True, env=env, timeout=300, check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"worker {name} failed:\n{proc.stderr.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (1.5 s before, 2.5 s after)")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of steady load before the kill")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after the kill")
    parser.add_argument("--only", nargs="*", choices=IMPLEMENTATIONS)
    parser.add_argument("--output", default=str(RESULTS / "failover.md"),
                        help="the results page ('' for none)")
    parser.add_argument("--json", help="also write the summary rows here")
    parser.add_argument("--worker")
    parser.add_argument("--primary", type=int)
    parser.add_argument("--replica", type=int)
    parser.add_argument("--kill-pid", type=int)
    args = parser.parse_args(argv)
    if args.worker:
        from gevent import monkey

        monkey.patch_all()
        result = worker(args.worker, args.primary, args.replica, args.kill_pid, args.before, args.after)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)  # the peers' threads and sockets are not worth a clean shutdown
    sys.path.insert(0, str(ROOT))

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so that the slapd instances are stopped

    signal.signal(signal.SIGTERM, _terminate)
    bench_ldap = _bench_ldap()
    bench_ldap.ensure_peers()
    before, after = (1.5, 2.5) if args.quick else (args.before, args.after)
    names = args.only or IMPLEMENTATIONS
    results = []
    for name in names:
        result = _run(name, before, after, bench_ldap.PEERS_LIB)
        results.append(result)
        row = summarize(result)
        print(f"{name:<17} first ok {row['first_ok_ms']:.0f} ms, {row['failed']} failed, "
              f"p99 0-2s {row['failover_p99_ms']:.0f} ms", flush=True)
    rows = [summarize(r) for r in results]
    out = ["", f"kill of the serving replica: {GREENLETS} greenlets, pool of {POOL_SIZE}, connect timeout "
           f"{CONNECT_TIMEOUT:g} s, operation timeout {OP_TIMEOUT:g} s; {before:g} s before, "
           f"{after:g} s after",
           "", *_table(rows), ""]
    for row in rows:
        if row["errors"]:
            out.append(f"{row['name']}: failed calls by error: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(row["errors"].items())))
    out += ["", *_chart(results), ""]
    verdicts = []
    for row in rows:
        if row["name"].startswith("geventpool"):
            for claim, ok in targets(row):
                verdicts.append(f"{'PASS' if ok else 'MISS'} {row['name']}: {claim}")
    out += ["targets (issue 5):", *verdicts]
    text = "\n".join(out)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "before": before, "after": after}, indent=1))
    if args.output:
        page = Path(args.output)
        page.parent.mkdir(parents=True, exist_ok=True)
        png = page.with_suffix(".png")
        drew = _png(results, png)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        command = "python benchmarks/failover.py" + (" --quick" if args.quick else "")
        page.write_text(
            "# LDAP failover: the serving replica killed under load\n\n"
            f"Produced by `{command}` on {stamp}; how to read it: the docstring of "
            "benchmarks/failover.py.\n\n"
            f"```\n{text.strip()}\n```\n"
            + (f"\n![timeline]({png.name})\n" if drew else "\n(matplotlib is not installed: no chart)\n")
        )
        print(f"\nwrote {page}" + (f" and {png}" if drew else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
