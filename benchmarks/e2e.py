"""End to end: gunicorn -k gevent, one LDAP password check and one SQL read per request, 1,000 users.

The case a team adopting geventpool runs: ``gunicorn -k gevent -w 1`` serves
benchmarks/e2e_app.py (the shape of examples/gunicorn_app: per request one
LDAP bind for one of 1,000 distinct users, then one PostgreSQL row read; LDAP
and SQL pools of 10) in three variants:

- ``geventpool-auth``: ``LDAPPool.authenticate(dn, password)`` + geventpool.dbapi on psycopg2;
- ``geventpool-conn``: ldappool's idiom ``with cm.connection(dn, password):`` on
  ``geventpool.ldap.ConnectionManager`` + geventpool.dbapi;
- ``ldappool``: ldappool 3.0.0 with the same idiom + SQLAlchemy's QueuePool
  (pool_size 10, max_overflow 0) over psycopg2 made green by psycogreen.

This script starts a private slapd (1,000 users) and PostgreSQL on 127.0.0.1,
and gunicorn itself on a free port, once per variant and scenario.  The load
comes from benchmarks/e2e_load.py: 1, 10 and 50 keep-alive clients on gevent
sockets, each for a fixed time (after a warm-up), every request for the next
of the 1,000 users in turn.  Scenarios: the directory on loopback, and behind
a FaultProxy adding 5 ms each way (run in a process of its own, as in
benchmarks/ldap.py); PostgreSQL is always direct.  Rounds are interleaved:
round r runs every variant once, in an order rotated by r.  Reported per
scenario and concurrency: requests/s, p50 and p99 latency, errors, the worst
hub stall in the worker (a heartbeat greenlet in the app, read from its status
URL), the medians over the rounds, and the ratios to ldappool::

    .venv/bin/python benchmarks/e2e.py                 # 5 rounds x 3 s per cell (~7 min)
    .venv/bin/python benchmarks/e2e.py --quick         # smoke run: 1 round x 1 s
    .venv/bin/python benchmarks/e2e.py --only geventpool-auth,geventpool-conn --scenarios loopback

A full run writes ``e2e.md``, ``e2e.json`` and ``e2e.png`` into
benchmarks/results (``--out DIR`` elsewhere; a ``--quick`` run writes only with
``--out``).  The ldappool variant's libraries are installed on demand (pip,
PyPI, pinned in benchmarks/peers/e2e-requirements.txt) into
benchmarks/.peers/e2e-lib.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this directory comes first on sys.path, and benchmarks/ldap.py
# would shadow python-ldap: put it last (e2e_load is still found).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402
from e2e_load import LoadResult, basic_get, run_load  # noqa: E402
from gevent import subprocess  # noqa: E402

__all__ = ["VARIANTS", "SCENARIOS", "CLIENTS", "Cell", "main", "summarize", "markdown", "chart", "targets"]

VARIANTS = ["geventpool-auth", "geventpool-conn", "ldappool"]
SCENARIOS = {"loopback": 0.0, "+5 ms": 5.0}
CLIENTS = [1, 10, 50]
USERS = 1000
POOL_SIZE = 10
REQUIREMENTS = HERE / "peers" / "e2e-requirements.txt"
PEERS_LIB = HERE / ".peers" / "e2e-lib"
RESULTS = HERE / "results"
COLOURS = {"geventpool-auth": "#d9480f", "geventpool-conn": "#f59f00", "ldappool": "#8a96a3"}
TARGET = "#1c7ed6"


def ensure_peers() -> None:
    """Install the ldappool variant's libraries into benchmarks/.peers/e2e-lib unless they are there."""
    wanted = REQUIREMENTS.read_text()
    marker = PEERS_LIB / ".installed"
    if marker.exists() and marker.read_text() == wanted:
        return
    PEERS_LIB.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(PEERS_LIB),
         "-r", str(REQUIREMENTS)],
        check=True,
    )
    marker.write_text(wanted)


# -- servers ------------------------------------------------------------------------------------


_PROXY = """
import sys, gevent
from geventpool.testing import FaultProxy
proxy = FaultProxy(upstream=("127.0.0.1", int(sys.argv[1]))).start()
proxy.set_mode("delay", ms=float(sys.argv[2]))
print(proxy.port, flush=True)
gevent.get_hub().threadpool.spawn(sys.stdin.read).get()
"""


class DelayProxy:
    """A FaultProxy adding ``delay_ms`` each way, in a process of its own (ldappool blocks its hub)."""

    def __init__(self, upstream_port: int, delay_ms: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PROXY, str(upstream_port), str(delay_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the proxy exits when its stdin closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def create_table(pg: Any, users: int) -> None:
    """The rows the app reads: one per user, ``uid`` as in the directory."""
    pg.execute("CREATE TABLE e2e_users (uid text PRIMARY KEY, cn text NOT NULL, mail text NOT NULL)")
    pg.execute("INSERT INTO e2e_users SELECT 'user' || lpad(n::text, 4, '0'), 'User ' || n, "
               "'user' || lpad(n::text, 4, '0') || '@example.com' FROM generate_series(0, %s) AS n",
               (users - 1,))


class Gunicorn:
    """``gunicorn -k gevent -w 1`` serving one variant of benchmarks/e2e_app.py on a free port."""

    def __init__(self, variant: str, ldap_uri: str, pg_dsn: str, log_dir: str) -> None:
        from geventpool.testing.ports import free_port

        self.variant = variant
        self.port = free_port()
        self.log = os.path.join(log_dir, f"gunicorn-{variant}-{self.port}.log")
        env = dict(os.environ, E2E_VARIANT=variant, E2E_LDAP_URI=ldap_uri, E2E_PG_DSN=pg_dsn,
                   E2E_POOL_SIZE=str(POOL_SIZE), PYTHONPATH=os.pathsep.join([str(PEERS_LIB), str(ROOT)]))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{self.port}",
                 "--worker-connections", "1000", "--keep-alive", "60", "--timeout", "120",
                 "--graceful-timeout", "5", "--log-level", "warning", "--chdir", str(ROOT),
                 "benchmarks.e2e_app:application"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
            )

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker answers its status URL (raise RuntimeError with the log if it died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn ({self.variant}) exited with {self.proc.returncode}:\n"
                                   f"{self.tail()}")
            try:
                self.status()
                return
            except (OSError, ValueError, gevent.Timeout):
                gevent.sleep(0.05)
        raise RuntimeError(f"gunicorn ({self.variant}) not ready after {timeout:g} s:\n{self.tail()}")

    def status(self, reset: bool = False) -> dict[str, Any]:
        """The app's status URL: worst hub stall since the last reset, requests served, failures."""
        from gevent import socket

        path = "/_e2e/stall?reset=1" if reset else "/_e2e/stall"
        with gevent.Timeout(120), socket.create_connection(self.address, timeout=120) as sock:
            sock.sendall(basic_get(path).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ValueError(f"status URL answered {head[:40]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def tail(self, chars: int = 3000) -> str:
        with open(self.log, "rb") as log:
            return log.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the master this object started (it stops its worker), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- one cell -------------------------------------------------------------------------------------


def _requests(users: int) -> list[bytes]:
    from geventpool.testing.slapd import USER_PW

    return [basic_get("/", "Basic " + base64.b64encode(f"user{n:04d}:{USER_PW}".encode()).decode())
            for n in range(users)]


Cell = dict[str, Any]  # one measurement: variant, scenario, clients, round, rps, p50_ms, p99_ms, errors...


def measure(server: Gunicorn, clients: int, seconds: float, requests: list[bytes]) -> Cell:
    """Load the server with ``clients`` for ``seconds``; the figures and the worker's worst hub stall."""
    server.status(reset=True)
    before = server.status()
    result: LoadResult = run_load(server.address, clients, seconds, lambda n: requests[n % len(requests)])
    after = server.status()
    cpu_us = (after["cpu_s"] - before["cpu_s"]) * 1e6 / result.requests if result.requests else math.nan
    return {"rps": result.rps, "p50_ms": result.quantile_ms(0.50), "p99_ms": result.quantile_ms(0.99),
            "cpu_us": cpu_us,
            "requests": result.requests, "errors": result.errors, "error_kinds": result.error_kinds,
            "app_failures": after["failures"] - before["failures"], "stall_ms": after["max_stall_ms"],
            "elapsed": result.elapsed}


# -- summary ---------------------------------------------------------------------------------------


def summarize(cells: list[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, clients, variant): medians over rounds, errors summed, ratios to ldappool."""
    groups: dict[tuple[str, int, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell["scenario"], cell["clients"], cell["variant"]), []).append(cell)
    rows = []
    for (scenario, clients, variant), runs in groups.items():
        rows.append({
            "scenario": scenario, "clients": clients, "variant": variant, "rounds": len(runs),
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "stall_ms": statistics.median(r["stall_ms"] for r in runs),
            "cpu_us": statistics.median(r.get("cpu_us", math.nan) for r in runs),
            "max_stall_ms": max(r["stall_ms"] for r in runs),
            "rps_rounds": [r["rps"] for r in runs],
        })
    reference = {(r["scenario"], r["clients"]): r["rps"] for r in rows if r["variant"] == "ldappool"}
    same_round = {(c["scenario"], c["clients"], c.get("round")): c["rps"] for c in cells
                  if c["variant"] == "ldappool"}
    for row in rows:
        ref = reference.get((row["scenario"], row["clients"]))
        row["x_ldappool"] = row["rps"] / ref if ref else None
        # beside the ratio of the medians: the median of each round's ratio (paired in time)
        runs = groups[(row["scenario"], row["clients"], row["variant"])]
        paired = [c["rps"] / same_round[key] for c in runs
                  if same_round.get(key := (c["scenario"], c["clients"], c.get("round")))]
        row["x_ldappool_paired"] = statistics.median(paired) if paired else None
    order = {name: i for i, name in enumerate(VARIANTS)}
    scenarios = list(SCENARIOS)
    rows.sort(key=lambda r: (scenarios.index(r["scenario"]) if r["scenario"] in scenarios else 99,
                             r["clients"], order.get(r["variant"], 99)))
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 16's targets: each geventpool idiom >= 1.0x ldappool on loopback, >= 8x at +5 ms, 50 clients."""
    found = {(r["scenario"], r["clients"], r["variant"]): r.get("x_ldappool") for r in rows}
    wanted = [("loopback", c, 1.0) for c in CLIENTS] + [("+5 ms", 50, 8.0)]
    result = []
    for variant in ("geventpool-auth", "geventpool-conn"):
        for scenario, clients, bound in wanted:
            value = found.get((scenario, clients, variant))
            verdict = "not measured" if value is None else ("met" if value >= bound else "NOT met")
            result.append({"text": f"issue 16: {variant}, {scenario}, {clients} client(s): at least "
                                   f"{bound:g}x ldappool's requests/s", "value": value, "bound": bound,
                           "verdict": verdict})
    return result


def _fmt(value: float | None, spec: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    return format(value, spec)


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The results as a Markdown table (one line per scenario, clients and variant)."""
    lines = ["| directory | clients | variant | requests/s | x ldappool | x ldappool, paired | p50 ms | "
             "p99 ms | errors | worst hub stall ms | worker CPU µs/request |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['clients']} | {r['variant']} | {_fmt(r['rps'], '.0f')} | "
                     f"{_fmt(r['x_ldappool'], '.2f')} | {_fmt(r.get('x_ldappool_paired'), '.2f')} | "
                     f"{_fmt(r['p50_ms'], '.1f')} | "
                     f"{_fmt(r['p99_ms'], '.1f')} | {r['errors']} | {_fmt(r['stall_ms'], '.1f')} | "
                     f"{_fmt(r.get('cpu_us'), '.0f')} |")
    return lines


def markdown(data: dict[str, Any]) -> str:
    """The results page: how it was run, the table, the targets, the chart."""
    lines = ["# End to end: gunicorn -k gevent, LDAP bind + SQL read per request", "",
             f"Produced by `python {data['command']}` on {data['date']}, {data['python']}, "
             f"{data['cpus']} CPUs.  One gunicorn gevent worker; per request one LDAP password check "
             f"for one of {data['users']} distinct users and one PostgreSQL row read; pools of "
             f"{data['pool_size']}.  Medians over {data['rounds']} interleaved rounds of "
             f"{data['seconds']:g} s per cell (after a {data['warmup']:g} s warm-up); errors are summed "
             "over the rounds; the hub stall is the worker's worst heartbeat lateness in a cell "
             "(median over rounds).  *x ldappool*: the variant's median requests/s over ldappool's; "
             "*paired*: the median of the rounds' own ratios (each round runs the variants back to "
             "back).  The targets use the first.  *Worker CPU*: the gunicorn worker's CPU time per "
             "successful request (it does not count slapd's, PostgreSQL's or the client's; less "
             "sensitive than requests/s to other load on the machine).  Load average (1 min) at the "
             f"start and end of the run: {data.get('load', '-')}.  See benchmarks/README.rst.", "",
             *table_lines(data["rows"]), "", "## Targets", "", "| target | measured | verdict |",
             "|---|---:|---|"]
    for t in data["targets"]:
        lines.append(f"| {t['text']} | {_fmt(t['value'], '.2f')}{'x' if t['value'] else ''} | "
                     f"{t['verdict']} |")
    if data.get("chart"):
        lines += ["", f"![End to end]({data['chart']})"]
    return "\n".join(lines) + "\n"


def _where(scenario: str) -> str:
    return "directory on loopback" if scenario == "loopback" else f"directory {scenario} each way"


def chart(data: dict[str, Any], path: Path) -> bool:
    """Requests/s (top) and p99 latency (bottom), per scenario; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    rows = data["rows"]
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in rows)]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    if not scenarios:
        return False
    fig, axes = plt.subplots(2, len(scenarios), figsize=(6.2 * len(scenarios), 8.2), squeeze=False)
    width = 0.8 / len(variants)
    found = {(r["scenario"], r["clients"], r["variant"]): r for r in rows}
    for col, scenario in enumerate(scenarios):
        clients = sorted({r["clients"] for r in rows if r["scenario"] == scenario})
        for panel, key in ((axes[0][col], "rps"), (axes[1][col], "p99_ms")):
            for i, variant in enumerate(variants):
                xs, values, labels = [], [], []
                for g, c in enumerate(clients):
                    row = found.get((scenario, c, variant))
                    if row is None or row[key] != row[key]:
                        continue
                    xs.append(g + (i - (len(variants) - 1) / 2) * width)
                    values.append(row[key])
                    ratio = row.get("x_ldappool")
                    if key == "rps":
                        shown = f"{row[key]:.0f}"
                        if ratio is not None and variant != "ldappool":
                            shown += f"\n{ratio:.2f}x" if ratio < 2 else f"\n{ratio:.1f}x"
                    else:
                        shown = f"{row[key]:.0f}" if row[key] >= 10 else f"{row[key]:.1f}"
                    labels.append(shown)
                bars = panel.bar(xs, values, width * 0.92, color=COLOURS[variant], label=variant)
                for bar, label in zip(bars, labels, strict=False):
                    panel.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), label, ha="center",
                               va="bottom", fontsize=7)
            if key == "rps":  # the targets: a dashed line over each group, at the bound x ldappool
                for g, c in enumerate(clients):
                    ref = found.get((scenario, c, "ldappool"))
                    bound = 1.0 if scenario == "loopback" else (8.0 if c == 50 else None)
                    if ref is None or bound is None:
                        continue
                    panel.plot([g - 0.45, g + 0.45], [bound * ref["rps"]] * 2, color=TARGET, linestyle="--",
                               linewidth=1.2)
                    panel.text(g + 0.45, bound * ref["rps"], f" {bound:g}x", color=TARGET, fontsize=7,
                               va="center")
                panel.set_ylabel("requests per second (higher is better)", fontsize=8)
                panel.set_title(f"{_where(scenario)}: requests/s", fontsize=9)
                top = max([r["rps"] for r in rows if r["scenario"] == scenario] or [1.0])
                panel.set_ylim(0, top * 1.22)
            else:
                panel.set_yscale("log")
                panel.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                panel.set_ylabel("p99 latency, ms (log scale; lower is better)", fontsize=8)
                panel.set_title(f"{_where(scenario)}: p99 latency", fontsize=9)
            panel.set_xticks(range(len(clients)), [f"{c} client{'s' if c > 1 else ''}" for c in clients],
                             fontsize=8)
            panel.tick_params(axis="y", labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color=TARGET, linestyle="--"))
    labels.append("target (x ldappool)")
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"gunicorn -k gevent, 1 worker: per request an LDAP bind (one of {data['users']} users) and "
                 f"a SQL read; pools of {data['pool_size']}; median of {data['rounds']} round(s)",
                 fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1 - 0.3 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main --------------------------------------------------------------------------------------------


def _choices(text: str, allowed: list[str], what: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"e2e.py: unknown {what} {unknown}; choose from {allowed}")
    return chosen


def run_variant(variant: str, scenario: str, ldap_port: int, pg_dsn: str, args: argparse.Namespace,
                clients: list[int], requests: list[bytes], logs: str) -> list[Cell]:
    """Start gunicorn on ``variant``, warm it up, measure every client count, stop it."""
    cells = []
    server = Gunicorn(variant, f"ldap://127.0.0.1:{ldap_port}", pg_dsn, logs)
    try:
        server.wait_ready()
        if args.warmup > 0:  # the pools open their connections
            run_load(server.address, 10, args.warmup, lambda n: requests[n % len(requests)])
        for count in clients:
            cell = measure(server, count, args.seconds, requests)
            cell.update(variant=variant, scenario=scenario, clients=count)
            cells.append(cell)
            if cell["errors"]:
                print(f"  errors: {cell['error_kinds']}; worker log:\n{server.tail(1500)}", file=sys.stderr,
                      flush=True)
    finally:
        server.stop()
    return cells


def run(args: argparse.Namespace, variants: list[str], scenarios: list[str],
        clients: list[int]) -> list[Cell]:
    """Start the servers, run every round (variants interleaved); return the cells measured."""
    from geventpool.testing.postgres import PostgresServer
    from geventpool.testing.slapd import Slapd

    requests = _requests(args.users)
    cells: list[Cell] = []
    total = args.rounds * len(scenarios) * len(variants)
    done = 0
    with tempfile.TemporaryDirectory(prefix="geventpool-e2e-") as logs, \
            Slapd(users=args.users, tls=False, threads=8) as slapd, PostgresServer() as pg:
        create_table(pg, args.users)
        proxy = DelayProxy(slapd.port, args.delay_ms) if "+5 ms" in scenarios else None
        try:
            ports = {"loopback": slapd.port, "+5 ms": proxy.port if proxy else 0}
            for r in range(args.rounds):
                for scenario in scenarios:
                    for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
                        done += 1
                        print(f"# run {done}/{total}: round {r + 1} {scenario} {variant}", file=sys.stderr,
                              flush=True)
                        for cell in run_variant(variant, scenario, ports[scenario], pg.dsn, args, clients,
                                                requests, logs):
                            cell["round"] = r + 1
                            cells.append(cell)
                            print(f"round {r + 1} {scenario:>8} {cell['clients']:>2} clients {variant:<15} "
                                  f"{cell['rps']:>7.0f} req/s  p50 {cell['p50_ms']:7.1f} ms  "
                                  f"p99 {cell['p99_ms']:7.1f} ms  errors {cell['errors']:>3}  "
                                  f"stall {cell['stall_ms']:6.1f} ms", flush=True)
        finally:
            if proxy is not None:
                proxy.close()
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, 1 s per cell")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds of load per cell (default 3; --quick: 1)")
    parser.add_argument("--warmup", type=float,
                        help="seconds of warm-up per gunicorn start (default 1; --quick: 0.5)")
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    parser.add_argument("--scenarios", default="loopback,+5ms", help="loopback and/or +5ms")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)), help="comma-separated counts")
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--delay-ms", type=float, default=5.0, help="the proxy's delay each way")
    parser.add_argument("--out", type=Path,
                        help="directory for e2e.md, e2e.json, e2e.png (default: benchmarks/results; "
                             "--quick: none)")
    args = parser.parse_args(argv)
    for name, full, quick in (("rounds", 5, 1), ("seconds", 3.0, 1.0), ("warmup", 1.0, 0.5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.rounds < 1 or not args.seconds > 0 or args.warmup < 0:
        parser.error("--rounds must be >= 1, --seconds > 0 and --warmup >= 0")
    variants = _choices(args.only, VARIANTS, "variants")
    scenarios = [s.replace("+5ms", "+5 ms") for s in _choices(args.scenarios, ["loopback", "+5ms", "+5 ms"],
                                                              "scenarios")]
    clients = [int(c) for c in _choices(args.clients, [str(c) for c in range(1, 10001)], "client counts")]
    out = args.out if args.out is not None else (None if args.quick else RESULTS)

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so that the servers and gunicorn are stopped

    signal.signal(signal.SIGTERM, _terminate)
    if "ldappool" in variants:
        ensure_peers()
    load_start = os.getloadavg()[0]
    cells = run(args, variants, scenarios, clients)
    rows = summarize(cells)
    command = "benchmarks/e2e.py" + "".join(f" {a}" if " " not in a else f" '{a}'"
                                            for a in (argv if argv is not None else sys.argv[1:]))
    command = command.replace(str(ROOT) + os.sep, "")  # paths inside the repository, as given from its root
    data: dict[str, Any] = {
        "command": command, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "python": f"{platform.python_implementation()} {platform.python_version()}", "cpus": os.cpu_count(),
        "users": args.users, "pool_size": POOL_SIZE, "rounds": args.rounds, "seconds": args.seconds,
        "warmup": args.warmup, "delay_ms": args.delay_ms, "rows": rows, "targets": targets(rows),
        "cells": cells, "chart": None, "load": f"{load_start:.1f}, {os.getloadavg()[0]:.1f}",
    }
    print()
    print("\n".join(table_lines(rows)))
    print()
    for t in data["targets"]:
        print(f"{t['verdict']:12} {_fmt(t['value'], '.2f'):>6}x  {t['text']}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if chart(data, out / "e2e.png"):
            data["chart"] = "e2e.png"
        (out / "e2e.json").write_text(json.dumps(data, indent=1))
        (out / "e2e.md").write_text(markdown(data))
        print(f"results: {out / 'e2e.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
