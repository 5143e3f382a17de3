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
faults) goes to benchmarks/results/soak.png by default.
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


def plot(report: chaos.Report, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.tallies)
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    for name in names:
        samples = [s for s in report.samples if s.target == name]
        if not samples:
            continue
        times = [s.t for s in samples]
        steps = [b.t - a.t for a, b in zip([samples[0], *samples], samples, strict=False)]
        steps[0] = steps[1] if len(steps) > 1 else 1.0
        axes[0].plot(times, [s.ok / max(dt, 1e-3) for s, dt in zip(samples, steps, strict=False)],
                     label=f"{name} ok/s")
        axes[1].plot(times, [s.errors / max(dt, 1e-3) for s, dt in zip(samples, steps, strict=False)],
                     label=f"{name} typed errors/s")
        axes[2].plot(times, [s.size for s in samples], label=f"{name} size")
        axes[2].plot(times, [s.in_use for s in samples], linestyle=":", label=f"{name} in use")
    colours = {"server restart": "red", "server pause": "orange", "proxy reset": "purple",
               "proxy stall": "brown", "proxy blackhole": "black", "proxy refuse": "grey"}
    for t, _target, kind in report.fault_times:
        for ax in axes:
            ax.axvline(t, color=colours.get(kind, "blue"), alpha=0.25, linewidth=1)
    for kind, colour in colours.items():
        axes[0].plot([], [], color=colour, alpha=0.5, label=f"fault: {kind}")
    axes[0].set_ylabel("operations / s")
    axes[1].set_ylabel("typed errors / s")
    axes[2].set_ylabel("connections")
    axes[2].set_xlabel("seconds")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    lost = report.lost
    fig.suptitle(
        f"geventpool chaos soak: {report.duration:.0f} s, {report.workers} greenlets per pool, "
        f"lost {lost}, hub stall max {report.max_stall * 1000:.0f} ms"
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)


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
        plot(report, args.png)
        print(f"timeline: {args.png}")
    bad = report.lost or report.invariant_failures or any(
        t.late or t.untyped for t in report.tallies.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
