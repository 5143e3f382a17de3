"""Run every benchmark, with a progress bar; write Markdown results and PNG charts.

What ``make bench`` runs (after installing the ``bench`` extra, matplotlib, and
the peers' venv with ``benchmarks/peers/setup_peers.py``)::

    .venv/bin/python scripts/bench.py                  # everything, into benchmarks/results/
    .venv/bin/python scripts/bench.py --quick          # a smoke run, into a temporary directory
    .venv/bin/python scripts/bench.py --only overhead --no-peers --out /tmp/bench

Each benchmark (``benchmarks/overhead.py``, ``contention.py``, ``dbapi.py``,
``ldap.py``, ``e2e.py``) runs as a subprocess of this script; its own
progress lines (on its stderr, or its per-run lines) drive a plain-text
progress bar on this script's stderr.  Into ``--out`` go ``<name>.md`` (the
benchmark's table, then a check of the targets of the issues), ``<name>.png``
(bars per implementation, geventpool highlighted, the targets drawn as dashed
lines; ``e2e.py`` writes its own page and chart) and ``README.md``, an index.
A benchmark that cannot run (no PostgreSQL, no slapd) gets a page saying why;
the exit status is 1 if any benchmark failed.  Without matplotlib the charts
are left out, and the pages say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["BENCHMARKS", "Progress", "main"]

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results"
HIGHLIGHT, PEER, FLOOR, TARGET = "#d9480f", "#8a96a3", "#495057", "#1c7ed6"


# -- progress -------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (redrawn with ``\\r`` on a terminal, else a line per step)."""

    def __init__(self, title: str, stream: Any = None, width: int = 30) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.fraction = 0.0
        self.note = ""
        self._lock = threading.Lock()
        self._last = ""

    def update(self, fraction: float | None = None, note: str | None = None) -> None:
        with self._lock:
            if fraction is not None:
                self.fraction = min(max(fraction, self.fraction), 1.0)
            if note is not None:
                self.note = note
            self._draw()

    def _line(self) -> str:
        filled = round(self.fraction * self.width)
        elapsed = int(time.monotonic() - self.started)
        return (f"{self.title:9} [{'#' * filled}{'.' * (self.width - filled)}] {self.fraction * 100:3.0f}% "
                f"{elapsed // 60:02d}:{elapsed % 60:02d}  {self.note}")

    def _draw(self) -> None:
        line = self._line()
        if self.tty:
            self.stream.write("\r" + line[:119].ljust(119))
        elif line.split("]", 1)[1].split("  ", 1)[-1] != self._last:  # a line per new step
            self.stream.write(line + "\n")
        self._last = line.split("]", 1)[1].split("  ", 1)[-1]
        self.stream.flush()

    def finish(self, note: str) -> None:
        with self._lock:
            self.fraction = 1.0 if note.startswith("done") else self.fraction
            self.note = note
            line = self._line()
            self.stream.write(("\r" + line[:119].ljust(119) + "\n") if self.tty else line + "\n")
            self.stream.flush()


# -- one benchmark ----------------------------------------------------------------------------------


@dataclass
class Benchmark:
    """How to run one benchmark script and read its progress."""

    name: str
    title: str
    script: str
    command: Callable[[argparse.Namespace, Path], list[str]]
    progress: Callable[[str, dict[str, Any]], float | None]  # a line -> fraction done (or None)
    status: dict[str, Any] = field(default_factory=dict)


def _overhead_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = ["--output", str(out / "overhead.md"), "--json", str(out / "overhead.json")]
    return command + (["--quick"] if args.quick else []) + (["--no-peers"] if args.no_peers else [])


def _overhead_progress(line: str, state: dict[str, Any]) -> float | None:
    if line.startswith("# starting "):
        state["started"] = state.get("started", 0) + 1
        return 0.1 * min(state["started"] / 12, 1.0)
    match = re.match(r"# round (\d+)/(\d+)", line)
    if match:
        return 0.1 + 0.9 * (int(match.group(1)) - 1) / int(match.group(2))
    return None


def _contention_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = ["--output", str(out / "contention.md"), "--json", str(out / "contention.json")]
    return command + (["--quick"] if args.quick else []) + (["--no-peers"] if args.no_peers else [])


def _dbapi_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = ["--output", str(out / "dbapi.md"), "--json", str(out / "dbapi.json")]
    command += ["--seconds", "0.5", "--rounds", "1"] if args.quick else []
    return command + (["--no-peers"] if args.no_peers else [])


def _dbapi_progress(line: str, state: dict[str, Any]) -> float | None:
    match = re.match(r"# run (\d+)/(\d+)", line)
    return (int(match.group(1)) - 1) / int(match.group(2)) if match else None


def _ldap_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = ["--quick"] if args.quick else []
    if args.no_peers:
        command += ["--only", "geventpool", "raw"]
    if _ldap_writes_json():
        command += ["--json", str(out / "ldap.json")]
    return command


def _ldap_writes_json() -> bool:
    """Whether benchmarks/ldap.py has a ``--json`` option (it is read, not imported)."""
    try:
        return '"--json"' in (BENCH_DIR / "ldap.py").read_text()
    except OSError:
        return False


def _e2e_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = ["--out", str(out)] + (["--quick"] if args.quick else [])
    return command + (["--only", "geventpool-auth,geventpool-conn"] if args.no_peers else [])


def _ldap_progress(line: str, state: dict[str, Any]) -> float | None:
    # ldap.py prints one "round R ..." line per run: 4 scenarios x implementations x rounds
    if not line.startswith("round "):
        return None
    state["runs"] = state.get("runs", 0) + 1
    total = state["rounds"] * 4 * state["implementations"]
    return state["runs"] / total


BENCHMARKS = {
    "overhead": Benchmark("overhead", "Checkout overhead (core pool)", "overhead.py", _overhead_command,
                          _overhead_progress),
    "contention": Benchmark("contention", "Hand-off under contention (core pool)", "contention.py",
                            _contention_command, _overhead_progress),
    "dbapi": Benchmark("dbapi", "DB-API pools on PostgreSQL", "dbapi.py", _dbapi_command, _dbapi_progress),
    "ldap": Benchmark("ldap", "LDAP pools on slapd", "ldap.py", _ldap_command, _ldap_progress),
    "e2e": Benchmark("e2e", "End to end: gunicorn, LDAP bind + SQL read", "e2e.py", _e2e_command,
                     _dbapi_progress),
}


def run_benchmark(bench: Benchmark, args: argparse.Namespace, out: Path) -> tuple[int, str, str]:
    """Run one benchmark script; return (exit status, its stdout, the tail of its stderr)."""
    command = [args.python, str(BENCH_DIR / bench.script), *bench.command(args, out)]
    progress = Progress(bench.name)
    state: dict[str, Any] = {"rounds": 1 if args.quick else 3,
                             "implementations": 2 if args.no_peers else 5}
    progress.update(0.0, "starting")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    errors: list[str] = []

    def follow(stream: Any, keep: list[str] | None) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            if keep is not None:
                keep.append(line)
            fraction = bench.progress(line, state)
            if fraction is not None:
                progress.update(fraction, line.lstrip("# ")[:60])

    output: list[str] = []
    reader = threading.Thread(target=follow, args=(proc.stderr, errors), daemon=True)
    reader.start()
    assert proc.stdout is not None
    follow(proc.stdout, output)
    status = proc.wait()
    reader.join(timeout=10)
    elapsed = time.monotonic() - progress.started
    progress.finish(f"done in {elapsed:.0f} s" if status == 0 else f"FAILED (exit status {status})")
    bench.status = {"exit": status, "seconds": elapsed, "command": " ".join(command[1:])}
    return status, "\n".join(output), "\n".join(errors[-15:])


# -- targets -----------------------------------------------------------------------------------------


@dataclass
class Target:
    """One target of an issue: ``value`` must be at least (or at most) ``bound``."""

    text: str
    value: float | None
    bound: float | None
    at_most: bool = False

    @property
    def verdict(self) -> str:
        if self.value is None or self.bound is None:
            return "not measured"
        met = self.value <= self.bound if self.at_most else self.value >= self.bound
        return "met" if met else "NOT met"


def overhead_targets(data: dict[str, Any]) -> list[Target]:
    rows = {row["key"]: row for row in data["rows"]}
    ratio = rows.get("geventpool", {}).get("ratio_to_floor")
    return [Target("issue 11: geventpool `with pool.get()` at most 1.3x the floor (ratio to floor)",
                   ratio, 1.3, at_most=True)]


def contention_targets(data: dict[str, Any]) -> list[Target]:
    rows = {row["key"]: row for row in data["rows"]}
    pool, floor, fair = rows.get("geventpool", {}), rows.get("floor", {}), rows.get("fifo-floor", {})

    def share(of: dict[str, Any]) -> float | None:
        if pool.get("handoffs_per_s_wall") and of.get("handoffs_per_s_wall"):
            return float(pool["handoffs_per_s_wall"]) / float(of["handoffs_per_s_wall"])
        return None

    return [
        Target("issue 11: hand-off at least 0.95x the gevent Queue floor (which barges)",
               share(floor), 0.95, at_most=False),
        Target("hand-off against the fair floor (FIFO + a timer per wait), at least 0.95x",
               share(fair), 0.95, at_most=False),
        Target("issue 11: longest wait at most 2x the p99 (median round)",
               pool.get("max_over_p99"), 2.0, at_most=True),
    ]


def _rate(rows: dict[str, dict[str, Any]], *names: str) -> float | None:
    found = [rows[n]["ops_per_s"] for n in names if n in rows]
    return max(found) if found else None


def dbapi_targets(data: dict[str, Any]) -> list[Target]:
    """Targets of issues 4 and 13 for the PostgreSQL scenarios (MariaDB's have no target)."""
    targets = []
    for scenario in data["scenarios"]:
        rows = {row["name"]: row for row in scenario["rows"]}
        ours = _rate(rows, "geventpool")
        label = scenario["scenario"]
        if ours is None:
            continue

        def ratio(reference: float | None, ours: float | None = ours) -> float | None:
            return ours / reference if ours and reference else None

        if "sleep" in scenario["query"]:
            targets.append(Target(f"issue 4, {label}: at least 0.97x the 10-connection limit (raw)",
                                  ratio(_rate(rows, "raw")), 0.97))
            continue
        targets += [
            Target(f"issue 13, {label}: at least 1.3x eventlet (db_pool Raw + psycogreen)",
                   ratio(_rate(rows, "eventlet-raw")), 1.3),
            Target(f"issue 4, {label}: at least 2x psycopg_pool (the faster of threads/gevent)",
                   ratio(_rate(rows, "psycopg-pool-threads", "psycopg-pool-gevent")), 2.0),
        ]
        if scenario["workers"] == 10:
            targets.append(Target(f"issue 13, {label}: at least 0.9x the naive gevent Queue pool",
                                  ratio(_rate(rows, "naive-queue")), 0.9))
    return targets


def dbapi_lines(scenario: dict[str, Any]) -> list[tuple[str, float]]:
    """The dashed target lines of one dbapi scenario chart: (label, ops/s)."""
    rows = {row["name"]: row for row in scenario["rows"]}
    lines = []
    if "sleep" in scenario["query"]:
        raw = _rate(rows, "raw")
        return [("0.97x the limit (raw)", 0.97 * raw)] if raw else []
    wanted = [("1.3x eventlet", 1.3, ("eventlet-raw",)),
              ("2x psycopg_pool", 2.0, ("psycopg-pool-threads", "psycopg-pool-gevent"))]
    if scenario.get("workers") == 10:
        wanted.append(("0.9x naive Queue", 0.9, ("naive-queue",)))
    for label, factor, names in wanted:
        rate = _rate(rows, *names)
        if rate:
            lines.append((label, factor * rate))
    return lines


def ldap_targets(data: dict[str, Any]) -> list[Target]:
    """Targets of issue 3, from ldap.py's JSON: {"rows": [{scenario, greenlets, name, ops_per_s}]}."""
    rows = {(r["scenario"], r["greenlets"], r["name"]): r["ops_per_s"] for r in data.get("rows", [])}

    def ratio(scenario: str, greenlets: int, reference: str, factor: float) -> Target:
        ours = rows.get((scenario, greenlets, "geventpool"))
        ref = rows.get((scenario, greenlets, reference))
        return Target(f"issue 3, {scenario}, {greenlets} greenlet(s): at least {factor:g}x {reference}",
                      ours / ref if ours and ref else None, factor)

    return [ratio("direct", 50, "raw", 0.95), ratio("+5 ms", 50, "ldappool", 9.5),
            ratio("direct", 1, "ldappool", 1.0), ratio("+5 ms", 1, "ldappool", 1.0)]


def e2e_targets(data: dict[str, Any]) -> list[Target]:
    """Targets of issue 16, as e2e.py's JSON states them: {"targets": [{text, value, bound}]}."""
    return [Target(t["text"], t["value"], t["bound"]) for t in data["targets"]]


def targets_markdown(targets: list[Target]) -> list[str]:
    lines = ["## Targets", "", "| target | measured | verdict |", "|---|---:|---|"]
    for t in targets:
        shown = "-" if t.value is None else f"{t.value:.2f}x"
        lines.append(f"| {t.text} | {shown} | {t.verdict} |")
    return [*lines, ""]


# -- charts ------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _colour(name: str) -> str:
    if name.startswith("geventpool"):
        return HIGHLIGHT
    return FLOOR if name.startswith(("floor", "raw", "naive", "blocking")) else PEER


def overhead_chart(data: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    rows = [r for r in data["rows"] if r["cpu_us_median"] is not None]
    floor = next((r["cpu_us_median"] for r in rows if r["key"] == "floor"), None)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    labels = [r["label"].replace("`", "") for r in rows]
    values = [r["cpu_us_median"] for r in rows]
    bars = ax.barh(range(len(rows)), values, color=[_colour(r["key"]) for r in rows])
    for bar, row in zip(bars, rows, strict=False):
        ratio = row["ratio_to_floor"]
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {row['cpu_us_median']:.2f} µs ({ratio:.2f}x)" if ratio else "", va="center", fontsize=8)
    if floor:
        ax.axvline(1.5 * floor, color=TARGET, linestyle="--", linewidth=1.2)
        ax.text(1.5 * floor, -0.6, " target: 1.5x the floor", color=TARGET, fontsize=8, va="bottom")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.9)  # first row on top, room for the target's label
    ax.set_xlim(0, max(values) * 1.3)
    ax.set_xlabel("µs per checkout + return (CPU, median; lower is better)")
    _legend(fig, plt)
    fig.suptitle(f"Checkout overhead, one greenlet, no I/O ({data['iterations']} cycles x "
                 f"{data['rounds']} rounds)", fontsize=10, x=0.01, ha="left")
    _save(fig, path, plt)
    return True


def grouped_chart(groups: list[tuple[str, list[tuple[str, float]], list[tuple[str, float]]]],
                  title: str, path: Path) -> bool:
    """One panel per group: (panel title, [(name, ops/s)], [(target label, ops/s)])."""
    plt = _pyplot()
    if plt is None or not groups:
        return False
    columns = len(groups) if len(groups) <= 3 else (len(groups) + 1) // 2  # four panels: 2 x 2
    rows = (len(groups) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 4.4 * rows + 0.3), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax, (panel, bars, lines) in zip(axes.flat, groups, strict=False):
        names = [n for n, _ in bars]
        values = [v for _, v in bars]
        drawn = ax.bar(range(len(bars)), values, color=[_colour(n) for n in names])
        for bar, value in zip(drawn, values, strict=False):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.0f}", ha="center",
                    va="bottom", fontsize=7)
        top = max([*values, *(v for _, v in lines)], default=1.0)
        placed = -top  # labels at least 9 % of the height apart, so that close targets stay legible
        for label, value in sorted(lines, key=lambda line: line[1]):
            ax.axhline(value, color=TARGET, linestyle="--", linewidth=1)  # dashed across the bars
            placed = max(value, placed + 0.09 * top)
            ax.text(len(bars) - 0.4, placed, label.replace(" ", "\n", 1), color=TARGET, fontsize=7,
                    ha="left", va="center")  # labelled in a margin on the right
        ax.set_xlim(-0.6, len(bars) + (1.3 if lines else -0.4))
        ax.set_ylim(0, top * 1.15)
        ax.set_xticks(range(len(bars)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(panel, fontsize=9)
        ax.set_ylabel("operations per second (higher is better)", fontsize=8)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    _legend(fig, plt)
    _save(fig, path, plt)
    return True


def _legend(fig: Any, plt: Any) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=HIGHLIGHT, label="geventpool"), Patch(color=FLOOR, label="baselines / limit"),
               Patch(color=PEER, label="other libraries")]
    fig.legend(handles=handles, loc="upper right", ncol=3, fontsize=7, frameon=False)


def _save(fig: Any, path: Path, plt: Any) -> None:
    top = 1 - 0.3 / fig.get_figheight()  # the top strip: title (left) and legend (right)
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dbapi_chart(data: dict[str, Any], path: Path) -> bool:
    groups = [(f"{s['scenario']}: {s['query']}, {s['workers']} greenlets",
               [(r["name"], r["ops_per_s"]) for r in s["rows"]], dbapi_lines(s)) for s in data["scenarios"]]
    return grouped_chart(groups, f"DB-API pools on PostgreSQL (pool of {data['pool_size']}; dashed: targets)",
                         path)


def ldap_chart(data: dict[str, Any], path: Path) -> bool:
    rows = data.get("rows", [])
    keys = list(dict.fromkeys((r["scenario"], r["greenlets"]) for r in rows))
    groups = []
    for scenario, greenlets in keys:
        bars = [(r["name"], r["ops_per_s"]) for r in rows
                if (r["scenario"], r["greenlets"]) == (scenario, greenlets)]
        ref = dict(bars)
        lines = []
        if greenlets == 1 and "ldappool" in ref:
            lines.append(("1.0x ldappool", ref["ldappool"]))
        elif scenario == "direct" and "raw" in ref:
            lines.append(("0.95x raw", 0.95 * ref["raw"]))
        elif "ldappool" in ref:
            lines.append(("9.5x ldappool", 9.5 * ref["ldappool"]))
        groups.append((f"{scenario}, {greenlets} greenlet(s)", bars, lines))
    return grouped_chart(groups, "LDAP pools on slapd (base searches; dashed: targets)", path)


# -- pages -------------------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def write_page(bench: Benchmark, out: Path, status: int, stdout: str, stderr: str,
               quick: bool) -> dict[str, Any]:
    """Write ``<name>.md`` (and ``<name>.png``); return what the index needs."""
    page = out / f"{bench.name}.md"
    data = _load(out / f"{bench.name}.json")
    body: list[str] = []
    targets: list[Target] = []
    chart = False
    own_sections = False  # the benchmark's page has its targets and chart already
    # the benchmark's own page names its command: paths relative to the repository
    written = page.read_text().replace(str(ROOT) + "/", "").rstrip("\n") if page.exists() else ""
    if bench.name == "overhead" and data is not None:
        body = [written] if written else []
        targets = overhead_targets(data)
        chart = overhead_chart(data, out / "overhead.png")
    elif bench.name == "dbapi" and data is not None:
        body = [written] if written else []
        targets = dbapi_targets(data)
        chart = dbapi_chart(data, out / "dbapi.png")
    elif bench.name == "e2e" and data is not None:
        body = [written] if written else []
        targets = e2e_targets(data)
        chart = (out / "e2e.png").exists()
        own_sections = True
    elif bench.name == "contention" and data is not None:
        body = [written] if written else []
        targets = contention_targets(data)
    else:
        command = bench.status.get("command", f"benchmarks/{bench.script}").replace(str(ROOT) + "/", "")
        body = [f"# {bench.title}", "", f"Produced by `python {command}` (via scripts/bench.py) on "
                f"{time.strftime('%Y-%m-%d %H:%M %Z')}; its output:", "",
                "```", stdout.strip() or "(no output)", "```"]
        if bench.name == "ldap" and data is not None:
            try:
                targets = ldap_targets(data)
                chart = ldap_chart(data, out / "ldap.png")
            except (KeyError, TypeError, ValueError) as error:  # a JSON layout this script does not know
                body += ["", f"(No chart: ldap.json not understood: {error!r}.)"]
    if status != 0:
        body += ["", f"**The benchmark failed (exit status {status}).** The end of its stderr:", "", "```",
                 stderr.strip() or "(empty)", "```"]
    if quick:
        body = ["> A quick smoke run (`scripts/bench.py --quick`): short rounds, noisy figures.", "", *body]
    body.append("")
    if targets and not own_sections:
        body += targets_markdown(targets)
    if chart:
        body += [] if own_sections else [f"![{bench.title}]({bench.name}.png)", ""]
    elif status == 0 and data is None:
        body += [f"(No chart: benchmarks/{bench.script} wrote no figures for one.)", ""]
    elif status == 0:
        body += ["(No chart: matplotlib is not installed; `pip install -e '.[bench]'`.)", ""]
    page.write_text("\n".join(body))
    return {"name": bench.name, "title": bench.title, "status": status, "chart": chart, "targets": targets,
            "seconds": bench.status.get("seconds", 0.0)}


TARGETS: dict[str, Callable[[dict[str, Any]], list[Target]]] = {
    "overhead": overhead_targets, "contention": contention_targets, "dbapi": dbapi_targets,
    "ldap": ldap_targets, "e2e": e2e_targets,
}


def _earlier_entry(name: str, out: Path) -> dict[str, Any] | None:
    """The index entry of a benchmark not run this time, from the files an earlier run left."""
    page = out / f"{name}.md"
    if not page.exists():
        return None
    data = _load(out / f"{name}.json")
    try:
        targets = TARGETS[name](data) if data is not None else []
    except (KeyError, TypeError, ValueError):
        targets = []
    failed = "**The benchmark failed" in page.read_text()
    return {"name": name, "title": BENCHMARKS[name].title, "status": 1 if failed else 0,
            "chart": (out / f"{name}.png").exists(), "targets": targets, "seconds": None}


def write_index(out: Path, entries: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Write README.md: this run's benchmarks, and those an earlier run left in ``out``."""
    ran = {e["name"]: e for e in entries}
    shown = [ran.get(name) or _earlier_entry(name, out) for name in BENCHMARKS]
    lines = ["# Benchmark results", "",
             f"Last written by `python scripts/bench.py{' --quick' if args.quick else ''}` "
             "(what `make bench` runs) "
             f"on {time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.python_implementation()} "
             f"{platform.python_version()}, {os.cpu_count()} CPUs.  Every benchmark interleaves its "
             "contenders round by round; see benchmarks/README.rst for what each measures, and each "
             "page for when and how it was run.", "",
             "| benchmark | page | chart | targets | run time |", "|---|---|---|---|---:|"]
    for e in shown:
        if e is None:
            continue
        met = sum(1 for t in e["targets"] if t.verdict == "met")
        measured = sum(1 for t in e["targets"] if t.verdict != "not measured")
        verdict = f"{met} of {measured} met" if measured else "-"
        if e["status"] != 0:
            verdict = "FAILED" + (f" (exit {e['status']})" if e["seconds"] is not None else "")
        chart = f"[{e['name']}.png]({e['name']}.png)" if e["chart"] else "-"
        took = "an earlier run" if e["seconds"] is None else f"{e['seconds']:.0f} s"
        lines.append(f"| {e['title']} | [{e['name']}.md]({e['name']}.md) | {chart} | {verdict} | {took} |")
    lines.append("")
    for e in shown:
        if e is not None and e["chart"]:
            lines += [f"## {e['title']}", "", f"![{e['title']}]({e['name']}.png)", ""]
    (out / "README.md").write_text("\n".join(lines))


# -- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: short rounds (written to a temporary directory unless --out)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated benchmarks (default: {','.join(BENCHMARKS)})")
    parser.add_argument("--no-peers", action="store_true",
                        help="only geventpool and the in-process baselines: no peers venv, no PyPI")
    parser.add_argument("--out", type=Path, help="directory for the results (default benchmarks/results)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the benchmarks")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        parser.error(f"unknown benchmarks {unknown}; choose from {list(BENCHMARKS)}")
    out = args.out or (Path(tempfile.mkdtemp(prefix="geventpool-bench-")) if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in names:
        bench = BENCHMARKS[name]
        status, stdout, stderr = run_benchmark(bench, args, out)
        entries.append(write_page(bench, out, status, stdout, stderr, args.quick))
    write_index(out, entries, args)
    for e in entries:
        for t in e["targets"]:
            shown = "-" if t.value is None else f"{t.value:.2f}x"
            print(f"{e['name']:9} {t.verdict:12} {shown:>7}  {t.text}")
    print(f"results: {out}/README.md")
    return 0 if all(e["status"] == 0 for e in entries) else 1


if __name__ == "__main__":
    sys.exit(main())
