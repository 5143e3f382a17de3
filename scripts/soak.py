#!/usr/bin/env python3
"""The long chaos/soak profile (issue 6): prints the summary table and writes a PNG timeline.

    .venv/bin/python scripts/soak.py --minutes 10            # TCP, PostgreSQL and LDAP pools
    .venv/bin/python scripts/soak.py --minutes 2 --pools tcp --png /tmp/soak.png
    .venv/bin/python scripts/soak.py --minutes 3 --trace-memory 15   # where RSS drift comes from

200 greenlets per pool, pools of 10, a fault per pool about every 2 s
(server restart, pause, proxy reset/stall/blackhole/refuse), 5% of the
greenlets killed at random points per fault period, connection lifetime
``--lifetime`` seconds.  Exit status 1 when anything was lost, late, untyped
or an invariant broke.  The timeline (throughput, errors, pool sizes,
faults) goes to benchmarks/results/soak.png by default: one panel per pool,
rates binned per ``--bin`` seconds, a rug of faults per kind.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tracemalloc
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.reliability import chaos  # noqa: E402

BUILDERS = {"tcp": chaos.tcp_target, "postgres": chaos.postgres_target, "ldap": chaos.ldap_target}
LIFETIME_ARG = {"tcp": "max_lifetime", "postgres": "max_age", "ldap": "max_lifetime"}


#: fault kind -> colour of its lane in the fault rug (kinds not listed get grey)
FAULT_COLOURS = {"server restart": "tab:red", "server pause": "tab:orange", "proxy reset": "tab:purple",
                 "proxy stall": "tab:brown", "proxy blackhole": "black", "proxy refuse": "tab:gray"}


def _binned(
    times: list[float], values: list[float], width: float, how: str
) -> tuple[list[float], list[float]]:
    """Bin ``values`` by ``times`` into ``width``-second bins: ``how`` is "rate" (sum / width) or "mean"."""
    bins: dict[int, list[float]] = {}
    for t, value in zip(times, values, strict=True):
        bins.setdefault(int(t // width), []).append(value)
    keys = sorted(bins)
    centres = [(k + 0.5) * width for k in keys]
    if how == "rate":
        return centres, [sum(bins[k]) / width for k in keys]
    return centres, [sum(bins[k]) / len(bins[k]) for k in keys]


def plot(report: Any, path: str, bin_seconds: float = 10.0) -> None:
    """Draw the soak timeline: per pool, rates binned per ``bin_seconds``, connections, and a rug of faults.

    ``report`` needs ``samples`` (t, target, ok, errors, size, in_use, sessions), ``fault_times``
    ((t, target, kind)), ``tallies`` (pool names), ``duration``, ``workers``, ``lost``, ``max_stall``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in report.tallies if any(s.target == name for s in report.samples)]
    kinds = sorted({kind for _t, _target, kind in report.fault_times})
    fig = plt.figure(figsize=(12, 3.6 * max(1, len(names)) + 0.8))
    outer = fig.add_gridspec(max(1, len(names)), 1, hspace=0.25)
    first = None
    rug = None
    for row, name in enumerate(names):
        samples = [s for s in report.samples if s.target == name]
        times = [s.t for s in samples]
        inner = outer[row].subgridspec(3, 1, height_ratios=[3, 2, 0.25 + 0.22 * len(kinds)], hspace=0.08)
        rates = fig.add_subplot(inner[0], sharex=first)
        first = first or rates
        conns = fig.add_subplot(inner[1], sharex=first)
        rug = fig.add_subplot(inner[2], sharex=first)
        x, ok = _binned(times, [s.ok for s in samples], bin_seconds, "rate")
        rates.plot(x, ok, color="tab:blue", marker=".", label="successful operations / s")
        rates.set_ylim(0, max(ok, default=1) * 1.35 or 1)  # headroom for the legend
        rates.set_ylabel("operations / s")
        errors = rates.twinx()
        rates.set_zorder(errors.get_zorder() + 1)  # the successes' line in front of the errors' area
        rates.patch.set_visible(False)
        x, err = _binned(times, [s.errors for s in samples], bin_seconds, "rate")
        errors.fill_between(x, err, step="mid", color="tab:red", alpha=0.25, linewidth=0,
                            label="typed errors / s (right axis)")
        errors.set_ylim(0, max(err, default=1) * 1.35 or 1)
        errors.set_ylabel("typed errors / s", color="tab:red")
        errors.tick_params(axis="y", colors="tab:red")
        handles = rates.get_legend_handles_labels()[0] + errors.get_legend_handles_labels()[0]
        rates.legend(handles, [str(h.get_label()) for h in handles], loc="upper right", fontsize=7, ncol=2)
        rates.set_title(f"{name} pool: rates per {bin_seconds:g} s, connections, faults", fontsize=10,
                        loc="left")
        x, size = _binned(times, [s.size for s in samples], bin_seconds, "mean")
        conns.plot(x, size, color="tab:green", label="pool size (mean)")
        x, used = _binned(times, [s.in_use for s in samples], bin_seconds, "mean")
        conns.plot(x, used, color="tab:green", linestyle=":", label="in use (mean)")
        server = [(s.t, s.sessions) for s in samples if s.sessions is not None]
        sessions: list[float] = []
        if server:
            x, sessions = _binned([t for t, _ in server], [n for _, n in server], bin_seconds, "mean")
            conns.plot(x, sessions, color="tab:olive", linestyle="--", label="server sessions (mean)")
        conns.set_ylim(0, max([*size, *used, *sessions, 1]) * 1.45)
        conns.set_ylabel("connections")
        conns.legend(loc="upper right", fontsize=7, ncol=3)
        for kind_row, kind in enumerate(kinds):
            at = [t for t, target, k in report.fault_times if k == kind and target == name]
            rug.eventplot([at], lineoffsets=kind_row, linelengths=0.8, linewidths=0.8,
                          colors=FAULT_COLOURS.get(kind, "tab:gray"))
        rug.set_yticks(range(len(kinds)), kinds, fontsize=7)
        rug.set_ylim(-0.6, len(kinds) - 0.4)
        rug.set_ylabel("faults", fontsize=8)
        for ax in (rates, conns, rug):
            ax.grid(alpha=0.3)
            if ax is not rug or row < len(names) - 1:
                ax.tick_params(labelbottom=False)
    if first is not None and rug is not None:
        rug.set_xlabel("seconds since the start of the soak")
        first.set_xlim(0, max(report.duration, 1.0))
    fig.suptitle(
        f"geventpool chaos soak: {report.duration:.0f} s, {report.workers} greenlets per pool, "
        f"lost {report.lost}, hub stall max {report.max_stall * 1000:.0f} ms",
        y=1 - 0.15 / fig.get_figheight(),
    )
    fig.subplots_adjust(left=0.12, right=0.92, top=1 - 0.75 / fig.get_figheight(),
                        bottom=0.45 / fig.get_figheight())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_growth(before: Any, after: Any, top: int) -> None:
    """The allocation sites that grew most between two tracemalloc snapshots (tracebacks of 8 frames)."""
    keep = (tracemalloc.Filter(False, tracemalloc.__file__),)
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "traceback")
    total = sum(stat.size_diff for stat in stats)
    grown = sorted((stat for stat in stats if stat.size_diff > 0), key=lambda stat: -stat.size_diff)
    print(f"\ntraced memory after warm-up: {total / 1024:+.0f} KiB in all; the {top} sites that grew most:")
    for stat in grown[:top]:
        print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format()[-8:]:
            print("        " + line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pools", default="tcp,postgres,ldap", help="comma-separated: tcp, postgres, ldap")
    parser.add_argument("--workers", type=int, default=200, help="greenlets per pool")
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--lifetime", type=float, default=60.0, help="connection lifetime, seconds")
    parser.add_argument("--fault-every", type=float, default=2.0)
    parser.add_argument("--kill-fraction", type=float, default=0.05)
    parser.add_argument("--faults", default="all",
                        help="comma-separated fault kinds to inject (e.g. 'server restart,proxy reset'), "
                             "'all' or 'none' (greenlet kills are set by --kill-fraction)")
    parser.add_argument("--think", type=float, default=0.0, help="mean pause between operations, seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trace-memory", type=int, default=0, metavar="N",
                        help="trace allocations (slow): print the N sites that grew most after warm-up")
    parser.add_argument("--png", default=os.path.join(ROOT, "benchmarks", "results", "soak.png"))
    parser.add_argument("--bin", type=float, default=10.0, help="seconds per bin of the timeline's rates")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.pools.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown pools {unknown}; choose from {sorted(BUILDERS)}")
    snapshots: list[Any] = []
    snapshot = None
    if args.trace_memory:
        tracemalloc.start(8)

        def snapshot() -> None:
            gc.collect()
            snapshots.append(tracemalloc.take_snapshot())

    with contextlib.ExitStack() as stack:
        targets = [
            stack.enter_context(BUILDERS[n](args.size, **{LIFETIME_ARG[n]: args.lifetime}))  # type: ignore[operator]
            for n in names
        ]
        if args.faults != "all":
            wanted = set() if args.faults == "none" else {k.strip() for k in args.faults.split(",")}
            for target in targets:
                unknown_kinds = wanted - set(target.faults)
                if unknown_kinds:
                    parser.error(f"unknown fault kinds {sorted(unknown_kinds)}; "
                                 f"choose from {sorted(target.faults)}")
                target.faults = {k: v for k, v in target.faults.items() if k in wanted}
        report = chaos.run(
            targets, duration=args.minutes * 60, workers=args.workers, fault_every=args.fault_every,
            kill_fraction=args.kill_fraction, seed=args.seed, think=args.think, on_warm=snapshot,
            on_end=snapshot,  # the workers stopped, the pools still open
        )
    print(chaos.summary_table(report))
    for name in names:
        expected = max(report.duration * 0.75, 0) / args.lifetime * args.size
        print(f"{name}: connections opened after warm-up {report.connections_opened[name]:.0f} "
              f"(lifetime alone would give about {expected:.0f}; the rest replaced broken ones)")
    if len(snapshots) == 2:
        print_growth(snapshots[0], snapshots[1], args.trace_memory)
    for failure in report.invariant_failures[:20]:
        print("INVARIANT:", failure)
    if args.png:
        plot(report, args.png, args.bin)
        print(f"timeline: {args.png}")
    bad = report.lost or report.invariant_failures or any(
        t.late or t.untyped for t in report.tallies.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
