"""Benchmark saslauthpy against the C saslauthd, side by side in one run.

    python bench/run.py [--quick] [--scenarios 1,2,3,4,5,6,mem] [--duration S]
                        [--python PATH] [--out bench/RESULTS.md] [--plot bench/results.png]
                        [--profile]

Needs root (it creates and removes local accounts sbench0.. for the shadow/PAM
scenarios), gcc, sasl2-bin and, for scenario 6, slapd.  Loopback/UNIX sockets only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(BENCH.parent))

from daemons import Accounts, build_loadgen, raise_nofile  # noqa: E402
from report import machine, write_markdown, write_plot  # noqa: E402
from scenarios import SCENARIOS, Settings  # noqa: E402

NEEDS_ACCOUNTS = {"1", "2", "3", "4", "5"}


def profile_top(raw: Path, limit: int = 15) -> str:
    """Own-time and inclusive top functions from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] if " (" in f else f
                  for f in stack.split(";")[1:]]  # drop the thread/process frame
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return ""
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(limit)]
    out += ["", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(limit)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="short runs, fewer users, 10,000 memory entries")
    p.add_argument("--scenarios", default="1,2,3,4,5,6,mem",
                   help="comma list among 1,2,3,4,5,6,mem (default all)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 5, quick 2)")
    p.add_argument("--users", type=int, help="bench accounts (default 50, quick 8)")
    p.add_argument("-n", dest="threads", type=int, default=5, help="workers for both daemons")
    p.add_argument("--processes", type=int, default=0,
                   help="saslauthpy's [server] processes (default: its own, one per CPU)")
    p.add_argument("--accept", default="",
                   help="compare [server] accept variants in scenarios 1 and 2, "
                        "e.g. thread,loop (default: the daemon's default only)")
    p.add_argument("--python", default=sys.executable,
                   help="the interpreter saslauthpy runs on, with its dependencies installed "
                        "(default: this one), or several, comma-separated, side by side; the "
                        "Debian package runs on Debian's own python3: a venv of "
                        "/usr/bin/python3 measures that (see docs/performance.md)")
    p.add_argument("--idle", type=int, default=3000, help="idle connections in scenario 5")
    p.add_argument("--memory-entries", type=int, help="cache entries for 'mem' (100000)")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--plot", default=str(BENCH / "results.png"))
    p.add_argument("--json", help="also write the raw rows as JSON here")
    p.add_argument("--profile", action="store_true",
                   help="py-spy our daemon during scenario 1 (top costs go in the report)")
    args = p.parse_args(argv)

    chosen = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}: choose among {', '.join(SCENARIOS)}")
    duration = args.duration or (2.0 if args.quick else 5.0)
    users = args.users or (8 if args.quick else 50)
    pythons = tuple(x for x in args.python.split(",") if x) or (sys.executable,)
    raise_nofile()

    with tempfile.TemporaryDirectory(prefix="saslauthpy-bench-") as tmpdir:
        tmp = Path(tmpdir)
        s = Settings(tmp=tmp, loadgen=build_loadgen(tmp), duration=duration,
                     threads=args.threads, users=users, quick=args.quick, idle=args.idle,
                     request_timeout=10.0, processes=args.processes,
                     accept=tuple(a for a in args.accept.split(",") if a), pythons=pythons,
                     memory_entries=args.memory_entries or (10_000 if args.quick else 100_000),
                     profile=tmp / "profile.raw" if args.profile else None)
        rows = []
        needs_accounts = bool(NEEDS_ACCOUNTS & set(chosen))
        with Accounts(users) if needs_accounts else contextlib.nullcontext():
            for name in chosen:
                print(f"== scenario {name}", file=sys.stderr, flush=True)
                for row in SCENARIOS[name](s):
                    rows.append(row)
                    brief = row.error or "; ".join(
                        f"{g['group']}: {g['ok']} OK {g['no']} NO {g['errors'] + g['timeouts']} "
                        f"err, {g['rps']:.0f}/s p50 {g['p50_ms']:.3f} p99 {g['p99_ms']:.2f} ms"
                        for g in row.groups.values()) or str(row.extra)
                    cpu = row.extra.get("daemon_cpu_us_per_answer") if row.groups else None
                    if cpu is not None:
                        brief += f"; CPU {cpu} us/answer"
                    print(f"   {row.daemon:22} {brief}", file=sys.stderr, flush=True)
        top = profile_top(s.profile) if s.profile and s.profile.exists() else None
        if top:
            print(top, file=sys.stderr)

    out = Path(args.out)
    plot = Path(args.plot)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plotted = write_plot(plot, rows)
    if not plotted:
        print("matplotlib is not installed: no plot", file=sys.stderr)
    plot_ref = None
    if plotted:
        plot_ref = plot.name if plot.parent.resolve() == out.parent.resolve() else str(plot)
    settings = {"duration": f"{duration:g} s", "users": str(users), "threads": str(args.threads),
                "saslauthpy processes": str(args.processes or "default (one per CPU)"),
                "quick": str(args.quick).lower()}
    write_markdown(out, rows, machine(pythons), settings, plot_ref, top)
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    print(f"wrote {out}" + (f" and {plot}" if plotted else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
