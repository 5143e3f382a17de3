"""Pool size against throughput and p99 latency on PostgreSQL, and a queueing model against a measurement.

    .venv/bin/python benchmarks/sizing.py             # ~6 min: benchmarks/results/sizing.{md,json,png,rst}
    .venv/bin/python benchmarks/sizing.py --quick --out /tmp/sizing   # a smoke run (~40 s)
    .venv/bin/python benchmarks/sizing.py --chart-only  # redraw sizing.png from sizing.json

Part 1, closed loop: G greenlets (50, 200) run a query (``SELECT 1``, or
``SELECT pg_sleep(0.005)``) back to back through one ``geventpool.dbapi``
pool of N connections (psycopg2, autocommit, a private PostgreSQL on
127.0.0.1), for N from 1 to G.  Per cell: requests/s and the p99 of the
request's latency (wait for a connection + query + return).  Cells are
interleaved round by round; the median of the rounds is reported.  The
*knee* of a curve is the smallest pool reaching 95% of its best throughput.

Part 2, the model: open-loop Poisson arrivals at a fixed rate (one greenlet
per request, arrival times drawn in advance) against a pool of c connections
running ``pg_sleep(0.005)``; the measured wait for a connection beside what
``scripts/predict_wait.py`` predicts from the rate and the hold time measured
in the same run (M/M/c, and Allen-Cunneen with the hold time's measured
variability).

Everything runs in this one process: it is what one gunicorn worker sees.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

from predict_wait import predict  # noqa: E402

__all__ = ["main", "chart", "knee", "QUERIES", "GREENLETS", "SIZES", "MODEL_POINTS"]

#: label -> SQL
QUERIES = {"SELECT 1": "SELECT 1", "pg_sleep(5 ms)": "SELECT pg_sleep(0.005)"}
GREENLETS = (50, 200)
SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50, 100)
QUICK_SIZES = (1, 4, 16, 50)
#: (pool size, arrivals per second) of the model checks, pg_sleep(5 ms): about 70-75% busy (the hold
#: time grows past 5 ms with the load on the client's CPU)
MODEL_POINTS = ((4, 450.0), (8, 950.0))
MODEL_QUERY = "SELECT pg_sleep(0.005)"
#: a checkout slower than this counts as having waited (a free connection takes ~20 µs)
WAITED = 0.0002
#: wait thresholds (seconds) at which the measured and predicted tails are compared
TAIL_POINTS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def _pool(dsn: str, size: int) -> Any:
    import psycopg2

    from geventpool.dbapi import ConnectionPool

    pool = ConnectionPool(psycopg2, dsn, min_size=size, max_size=size, max_age=3600, max_idle=3600,
                          timeout=60.0, configure=lambda c: setattr(c, "autocommit", True),
                          application_name="sizing")
    pool.wait(30)
    return pool


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def closed_loop(
    dsn: str, query: str, greenlets: int, size: int, seconds: float, warmup: float
) -> dict[str, float]:
    """G greenlets back to back through a pool of ``size``: requests/s, p50 and p99 latency (ms) of the
    requests that ended in the measured window."""
    import gevent

    pool = _pool(dsn, size)
    latencies: list[float] = []
    window = [math.inf, math.inf]  # [start, end] of the measured window
    now = time.perf_counter

    def loop() -> None:
        while True:
            started = now()
            with pool.item() as conn:
                cur = conn.cursor()
                cur.execute(query)
                cur.fetchall()
            ended = now()
            if window[0] <= ended <= window[1]:
                latencies.append(ended - started)

    workers = [gevent.spawn(loop) for _ in range(greenlets)]
    try:
        gevent.sleep(warmup)
        window[0], window[1] = now(), now() + seconds
        gevent.sleep(seconds)
    finally:
        gevent.killall(workers)
        pool.close(timeout=5)
    return {"ops_per_s": len(latencies) / seconds, "p50_ms": _percentile(latencies, 0.5) * 1000,
            "p99_ms": _percentile(latencies, 0.99) * 1000}


def open_loop(dsn: str, size: int, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s, each holding a connection for MODEL_QUERY; waits and holds."""
    import gevent

    pool = _pool(dsn, size)
    rng = random.Random(seed)
    waits: list[float] = []
    holds: list[float] = []
    lags: list[float] = []
    now = time.perf_counter
    warmup = min(1.0, seconds / 5)

    def request(due: float, counted: bool) -> None:
        started = now()
        with pool.item() as conn:
            got = now()
            cur = conn.cursor()
            cur.execute(MODEL_QUERY)
            cur.fetchall()
        returned = now()
        if counted:
            lags.append(started - due)
            waits.append(got - started)
            holds.append(returned - got)

    spawned: list[Any] = []
    try:
        begin = now()
        due = begin
        while due - begin < warmup + seconds:
            due += rng.expovariate(rate)
            delay = due - now()
            if delay > 0:
                gevent.sleep(delay)
            spawned.append(gevent.spawn(request, due, due - begin >= warmup))
        elapsed = now() - begin - warmup
        gevent.joinall(spawned, timeout=30, raise_error=True)
    finally:
        gevent.killall(spawned)
        pool.close(timeout=5)
    arrivals = len(waits)
    hold = statistics.fmean(holds)
    cs2 = statistics.pvariance(holds) / hold**2
    measured_rate = arrivals / elapsed
    predicted: dict[str, Any] = {}
    for name, c2 in (("mmc", 1.0), ("allen_cunneen", cs2)):
        try:
            p = predict(measured_rate, hold, size, c2)
        except ValueError:  # rate x hold >= size: the model has no steady state
            predicted[name] = None
            continue
        predicted[name] = {"p_wait": p.p_wait, "mean_ms": p.mean_wait * 1000, "p50_ms": p.p50_wait * 1000,
                           "p99_ms": p.p99_wait * 1000,
                           "tail": {str(t): p.wait_exceeds(t) for t in TAIL_POINTS}}
    return {
        "size": size, "rate": rate, "measured_rate": measured_rate, "arrivals": arrivals, "seconds": elapsed,
        "hold_ms": hold * 1000, "hold_cs2": cs2, "busy": measured_rate * hold,
        "spawn_lag_p99_ms": _percentile(lags, 0.99) * 1000,
        "measured": {"p_wait": sum(w > WAITED for w in waits) / arrivals,
                     "mean_ms": statistics.fmean(waits) * 1000, "p50_ms": _percentile(waits, 0.5) * 1000,
                     "p99_ms": _percentile(waits, 0.99) * 1000,
                     "tail": {str(t): sum(w > t for w in waits) / arrivals for t in TAIL_POINTS}},
        "predicted": predicted,
    }


def knee(points: list[tuple[int, float]], share: float = 0.95) -> int | None:
    """Return the smallest pool size whose throughput reaches ``share`` of the best one."""
    if not points:
        return None
    best = max(rate for _, rate in points)
    return min(size for size, rate in points if rate >= share * best)


def model_checks(dsn: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each model point ``--model-rounds`` times, interleaved; per point, the round of median mean wait
    (measured and predicted figures from the same round), with every round's measured mean and p99."""
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(MODEL_POINTS))}
    for r in range(args.model_rounds):
        for i, (size, rate) in enumerate(MODEL_POINTS):
            print(f"# model check round {r + 1}/{args.model_rounds}: pool of {size}, {rate:g} arrivals/s, "
                  f"{args.model_seconds:g} s", file=sys.stderr, flush=True)
            runs[i].append(open_loop(dsn, size, rate, args.model_seconds, seed=args.seed + 100 * r + i))
    checks = []
    for i in sorted(runs):
        ordered = sorted(runs[i], key=lambda check: check["measured"]["mean_ms"])
        chosen = dict(ordered[(len(ordered) - 1) // 2])
        chosen["rounds"] = len(ordered)
        chosen["rounds_measured"] = [{"mean_ms": c["measured"]["mean_ms"], "p99_ms": c["measured"]["p99_ms"],
                                      "spawn_lag_p99_ms": c["spawn_lag_p99_ms"]} for c in runs[i]]
        checks.append(chosen)
    return checks


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from geventpool.testing.postgres import PostgresServer

    sizes = QUICK_SIZES if args.quick else SIZES
    cells = [(label, g, n) for label in QUERIES for g in GREENLETS for n in sizes if n <= g]
    samples: dict[tuple[str, int, int], list[dict[str, float]]] = {cell: [] for cell in cells}
    total = len(cells) * args.rounds
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with PostgresServer(settings={"max_connections": "300"}) as pg:
        done = 0
        for r in range(args.rounds):
            for label, g, n in cells:
                done += 1
                print(f"# {done}/{total} round {r + 1}: {label}, {g} greenlets, pool of {n}", file=sys.stderr,
                      flush=True)
                samples[(label, g, n)].append(
                    closed_loop(pg.dsn, QUERIES[label], g, n, args.seconds, args.warmup))
        checks = model_checks(pg.dsn, args)
    curves = []
    for label, sql in QUERIES.items():
        for g in GREENLETS:
            rows = []
            for (lab, gg, n), runs in samples.items():
                if lab == label and gg == g:
                    rows.append({"size": n, "ops_per_s": statistics.median(x["ops_per_s"] for x in runs),
                                 "p50_ms": statistics.median(x["p50_ms"] for x in runs),
                                 "p99_ms": statistics.median(x["p99_ms"] for x in runs),
                                 # the spread of the rounds: how much the shared machine moved the figure
                                 "ops_per_s_range": [min(x["ops_per_s"] for x in runs),
                                                     max(x["ops_per_s"] for x in runs)],
                                 "p99_ms_range": [min(x["p99_ms"] for x in runs),
                                                  max(x["p99_ms"] for x in runs)]})
            rows.sort(key=lambda row: row["size"])
            curves.append({"query": label, "sql": sql, "greenlets": g, "rows": rows,
                           "knee": knee([(row["size"], row["ops_per_s"]) for row in rows])})
    return {"benchmark": "sizing", "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "python": sys.version.split()[0], "cpus": os.cpu_count(), "seconds": args.seconds,
            "rounds": args.rounds, "quick": args.quick, "run_seconds": time.monotonic() - started,
            "load_average": [load_before, os.getloadavg()[0]],
            "curves": curves, "model": checks}


def chart(data: dict[str, Any], path: Path) -> bool:
    """Draw throughput and p99 against pool size per query, and the wait tails model vs measured.

    Returns False when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    queries = list(dict.fromkeys(curve["query"] for curve in data["curves"]))
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    sparse = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "125" else "")
    fig = plt.figure(figsize=(15, 8.5))
    grid = fig.add_gridspec(2, len(queries) + 1, width_ratios=[1.0] * len(queries) + [1.1])
    styles = {50: ("tab:blue", "o"), 200: ("tab:orange", "s")}
    for col, query in enumerate(queries):
        top = fig.add_subplot(grid[0, col])
        bottom = fig.add_subplot(grid[1, col], sharex=top)
        for curve in (c for c in data["curves"] if c["query"] == query):
            colour, marker = styles.get(curve["greenlets"], ("tab:green", "^"))
            sizes = [row["size"] for row in curve["rows"]]
            label = f"{curve['greenlets']} greenlets"
            top.plot(sizes, [row["ops_per_s"] for row in curve["rows"]], marker=marker, color=colour,
                     label=label)
            bottom.plot(sizes, [row["p99_ms"] for row in curve["rows"]], marker=marker, color=colour,
                        label=label)
            for ax, key in ((top, "ops_per_s_range"), (bottom, "p99_ms_range")):
                if all(key in row for row in curve["rows"]):
                    ax.fill_between(sizes, [row[key][0] for row in curve["rows"]],
                                    [row[key][1] for row in curve["rows"]], color=colour, alpha=0.15,
                                    linewidth=0)
            if curve["knee"] is not None:
                at = next(row for row in curve["rows"] if row["size"] == curve["knee"])
                top.plot([at["size"]], [at["ops_per_s"]], marker="*", markersize=16, color=colour,
                         markeredgecolor="black", linestyle="none")
                top.annotate(f"95% of best at {at['size']}", (at["size"], at["ops_per_s"]),
                             textcoords="offset points", xytext=(6, -14 if curve["greenlets"] == 50 else 6),
                             fontsize=8, color=colour)
        top.set_title(f"{query}: throughput", fontsize=10)
        top.set_ylabel("requests per second (higher is better)")
        top.set_ylim(bottom=0)
        bottom.set_title(f"{query}: p99 latency (wait + query + return)", fontsize=10)
        bottom.set_ylabel("p99 latency, ms (log scale; lower is better)")
        bottom.set_yscale("log")
        bottom.set_xlabel("pool size (connections, log scale)")
        bottom.yaxis.set_major_formatter(plain)
        bottom.yaxis.set_minor_formatter(sparse)
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(plain)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8, loc="best")
        top.plot([], [], marker="*", markersize=12, color="grey", markeredgecolor="black", linestyle="none",
                 label="knee: 95% of the best throughput")
        top.fill_between([], [], [], color="grey", alpha=0.15, label="lowest to highest round")
        top.legend(fontsize=8, loc="upper left")
    tail = fig.add_subplot(grid[:, len(queries)])
    colours = ["tab:purple", "tab:red", "tab:brown"]
    for check, colour in zip(data["model"], colours, strict=False):
        ts = sorted(float(t) for t in check["measured"]["tail"])
        xs = [t * 1000 for t in ts]
        name = f"pool {check['size']}, {check['measured_rate']:.0f}/s"
        seen = [(x, check["measured"]["tail"][str(t)]) for x, t in zip(xs, ts, strict=True)]
        seen = [(x, share) for x, share in seen if share > 0]  # none waited that long: off a log scale
        tail.plot([x for x, _ in seen], [share for _, share in seen], marker="o", color=colour,
                  label=f"{name}: measured")
        for model, style, title in (("allen_cunneen", "--", "Allen-Cunneen"), ("mmc", ":", "M/M/c")):
            if check["predicted"].get(model) is not None:
                tail.plot(xs, [check["predicted"][model]["tail"][str(t)] for t in ts],
                          linestyle=style, color=colour, label=f"{name}: model ({title})")
    tail.set_xscale("log")
    tail.set_yscale("log")
    tail.set_xlabel("wait for a connection, ms (log scale)")
    tail.set_ylabel("share of requests waiting longer (log scale)")
    tail.set_title("wait for a connection, model vs measured\n(pg_sleep(5 ms), Poisson arrivals)",
                   fontsize=10)
    tail.xaxis.set_major_formatter(plain)
    tail.set_ylim(bottom=1e-4)  # about the resolution of a run of 10,000 arrivals
    tail.grid(alpha=0.3, which="both")
    tail.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"geventpool.dbapi pool size on PostgreSQL (one gevent process, {data.get('cpus')} CPUs "
                 f"shared; median of {data.get('rounds')} rounds)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def markdown(data: dict[str, Any], command: str) -> str:
    """The results page: one table per query, the knees, and the model check."""
    load = data.get("load_average")
    busy = f", load average {load[0]:.1f} at the start and {load[1]:.1f} at the end" if load else ""
    out = ["# Pool size on PostgreSQL: throughput, p99, and the queueing model", "",
           f"Produced by `{command}` on {data['when']} (CPython {data['python']}, {data['cpus']} CPUs shared "
           f"with other work{busy}; {data['run_seconds']:.0f} s).  One process, gevent, `geventpool.dbapi` "
           f"with psycopg2 in autocommit against a private PostgreSQL on 127.0.0.1.  Median of "
           f"{data['rounds']} interleaved rounds of {data['seconds']:g} s per cell.  Latency is the "
           "request's: wait for a connection + query + return.", "", "![sizing](sizing.png)", ""]
    for query in dict.fromkeys(c["query"] for c in data["curves"]):
        curves = [c for c in data["curves"] if c["query"] == query]
        out += [f"## `{curves[0]['sql']}`", "",
                "| pool size | "
                + " | ".join(f"{c['greenlets']} greenlets: req/s | p99 ms" for c in curves) + " |",
                "|---:|" + "---:|---:|" * len(curves)]
        sizes = sorted({row["size"] for c in curves for row in c["rows"]})
        for size in sizes:
            cells = []
            for c in curves:
                row = next((r for r in c["rows"] if r["size"] == size), None)
                cells += ["-", "-"] if row is None else [f"{row['ops_per_s']:.0f}", f"{row['p99_ms']:.1f}"]
            out.append(f"| {size} | " + " | ".join(cells) + " |")
        out += [""] + [f"- {c['greenlets']} greenlets: 95% of the best throughput from a pool of {c['knee']}"
                       for c in curves] + [""]
    out += ["## The queueing model against a measurement", "",
            f"Open-loop Poisson arrivals, `{MODEL_QUERY}` per request; the model's inputs are the measured "
            "arrival rate and the measured mean hold time (checkout to return); *waited* counts checkouts "
            f"slower than {WAITED * 1000:g} ms.", "",
            "| pool | arrivals/s | hold ms (cs2) | busy (Little) | | waited | mean wait ms | p50 ms "
            "| p99 ms |",
            "|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for check in data["model"]:
        head = (f"| {check['size']} | {check['measured_rate']:.0f} | {check['hold_ms']:.2f} "
                f"({check['hold_cs2']:.3f}) | {check['busy']:.2f} |")
        for label, fig in (("measured", check["measured"]), ("M/M/c", check["predicted"]["mmc"]),
                           ("Allen-Cunneen", check["predicted"]["allen_cunneen"])):
            if fig is None:
                out.append(f"| | | | | {label} | no steady state (rate x hold >= pool) | | | |")
                continue
            out.append(f"{head if label == 'measured' else '| | | | |'} {label} | {fig['p_wait']:.1%} | "
                       f"{fig['mean_ms']:.2f} | {fig['p50_ms']:.2f} | {fig['p99_ms']:.2f} |")
    out += [""] + [f"- {line}" for line in _rounds_lines(data)]
    out += ["", "Predict for your own figures: `python scripts/predict_wait.py --rate R --hold H --size N "
            "[--cs2 C]`.", ""]
    return "\n".join(out)


def rst(data: dict[str, Any]) -> str:
    """The figures as reStructuredText tables, for docs/sizing.rst to include (nothing retyped)."""
    out = [f".. generated by benchmarks/sizing.py ({data['command']}, {data['when']}); do not edit", ""]
    for query in dict.fromkeys(c["query"] for c in data["curves"]):
        curves = [c for c in data["curves"] if c["query"] == query]
        out += [f".. list-table:: ``{curves[0]['sql']}``: requests/s and p99 latency (ms) by pool size",
                "   :header-rows: 1", "   :align: left", "",
                "   * - pool size"]
        out += [f"     - {c['greenlets']} greenlets: req/s\n     - p99 ms"
                for c in curves]
        for size in sorted({row["size"] for c in curves for row in c["rows"]}):
            out.append(f"   * - {size}")
            for c in curves:
                row = next((r for r in c["rows"] if r["size"] == size), None)
                out += (["     - \\-", "     - \\-"] if row is None
                        else [f"     - {row['ops_per_s']:.0f}", f"     - {row['p99_ms']:.1f}"])
        out += [""] + [f"- {c['greenlets']} greenlets: 95% of the best throughput from a pool of "
                       f"**{c['knee']}**." for c in curves] + [""]
    out += [".. list-table:: The wait for a connection: measured, and predicted from the measured rate and "
            "hold time",
            "   :header-rows: 1", "   :align: left", "",
            "   * - pool\n     - arrivals/s\n     - hold ms (cs2)\n     - busy (Little)\n     - \n"
            "     - waited\n     - mean wait ms\n     - p50 ms\n     - p99 ms"]
    for check in data["model"]:
        first = True
        for label, fig in (("measured", check["measured"]), ("M/M/c", check["predicted"]["mmc"]),
                           ("Allen-Cunneen", check["predicted"]["allen_cunneen"])):
            head = ([str(check["size"]), f"{check['measured_rate']:.0f}",
                     f"{check['hold_ms']:.2f} ({check['hold_cs2']:.3f})", f"{check['busy']:.2f}"]
                    if first else ["", "", "", ""])
            first = False
            cells = (["no steady state", "", "", ""] if fig is None else
                     [f"{fig['p_wait']:.1%}", f"{fig['mean_ms']:.2f}", f"{fig['p50_ms']:.2f}",
                      f"{fig['p99_ms']:.2f}"])
            values = [*head, label, *cells]
            out.append("   * - " + values[0])
            out += [f"     - {value}" for value in values[1:]]
    out += [""] + [f"- {line.replace('`', '``')}" for line in _rounds_lines(data)]
    return "\n".join(out) + "\n"


def _rounds_lines(data: dict[str, Any]) -> list[str]:
    """How the model checks ran: their command, and every round's measured figures."""
    lines = []
    if data.get("model_command") and data.get("model_command") != data.get("command"):
        lines.append(f"The model checks: `{data['model_command']}` on {data.get('model_when')}.")
    for check in data["model"]:
        rounds = check.get("rounds_measured")
        if not rounds:
            continue
        each = ", ".join(f"{r['mean_ms']:.2f} / {r['p99_ms']:.1f}" for r in rounds)
        lag = max(r["spawn_lag_p99_ms"] for r in rounds)
        lines.append(f"Pool of {check['size']}: the round of median mean wait of {check['rounds']}; each "
                     f"round's measured mean / p99 wait (ms): {each}; the process's own scheduling lag "
                     f"(p99 of arrivals' start after their due time, worst round): {lag:.1f} ms.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds of load before each cell is measured")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-seconds", type=float, default=10.0, help="seconds per model check round")
    parser.add_argument("--model-rounds", type=int, default=3, help="rounds of each model check")
    parser.add_argument("--model-only", action="store_true",
                        help="run the model checks again; keep the pool-size figures of sizing.json")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--quick", action="store_true",
                        help="fewer pool sizes, 0.5 s cells, 1 round, 4 s checks")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="directory for sizing.{md,json,png}")
    parser.add_argument("--chart-only", action="store_true",
                        help="redraw the chart and page from sizing.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.rounds, args.model_seconds, args.model_rounds = 0.5, 0.2, 1, 4.0, 1
    command = "python benchmarks/sizing.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.chart_only or args.model_only:
        data = json.loads((args.out / "sizing.json").read_text())
        if args.model_only:
            sys.path.insert(0, str(ROOT))
            from geventpool.testing.postgres import PostgresServer

            with PostgresServer(settings={"max_connections": "300"}) as pg:
                data["model"] = model_checks(pg.dsn, args)
            data["model_command"] = command.strip()
            data["model_when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            (args.out / "sizing.json").write_text(json.dumps(data, indent=1) + "\n")
    else:
        data = run(args)
        data["command"] = data["model_command"] = command.strip()
        data["model_when"] = data["when"]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sizing.json").write_text(json.dumps(data, indent=1) + "\n")
    drew = chart(data, args.out / "sizing.png")
    (args.out / "sizing.md").write_text(markdown(data, data["command"]))
    (args.out / "sizing.rst").write_text(rst(data))
    print(markdown(data, data["command"]))
    print(f"written: {args.out / 'sizing.md'}, sizing.json, sizing.rst"
          + (", sizing.png" if drew else " (no matplotlib)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
