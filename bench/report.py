"""Turn measured rows into bench/RESULTS.md (ratios ours / C with absolute numbers) and a PNG."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from daemons import CSaslauthd
from scenarios import Row

C_LABEL = CSaslauthd.label


def machine(pythons: tuple[str, ...] = (sys.executable,)) -> dict[str, str]:
    """What the run ran on; ``pythons``: saslauthpy's interpreters."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        v = subprocess.run(["saslauthd", "-v"], capture_output=True, text=True, timeout=5)
        c_version = (v.stdout + v.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        c_version = "unknown"
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": f"{mem_kb // 1024} MiB",
            "kernel": platform.release(), "python": "; ".join(map(interpreter, pythons)),
            "c": c_version, "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def interpreter(python: str) -> str:
    """``python``'s version and path, and whether its libpython is a shared library: such
    a build (pyenv's default, without profile-guided optimisation) cost us up to 15% more
    CPU per answer than Debian's own python3, which the Debian package runs on
    (docs/performance.md)."""
    probe = ("import platform, sys; print(platform.python_version(), sys.executable, "
             "any('libpython' in line for line in open('/proc/self/maps')), sep='|')")
    try:
        res = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=30)
        version, path, shared = res.stdout.strip().split("|")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return f"unknown ({python})"
    return f"{version} ({path}, {'shared' if shared == 'True' else 'static'} libpython)"


@dataclass
class Line:
    scenario: str
    title: str
    metric: str
    c: str
    ours_label: str
    ours: str
    ratio: str
    target: str
    met: str
    c_value: float | None = None
    ours_value: float | None = None


def _g(row: Row, name: str) -> dict | None:
    return row.groups.get(name) if row and not row.error else None


def _fmt_ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms"


def _missing(row: Row | None) -> str | None:
    """Why a row has no measurement (not run, or the error), None if it has one."""
    if row is None:
        return "not run"
    if row.error:
        return f"error: {row.error[:80]}"
    return None


def _latency(row: Row | None, name: str, timeout: float | None = None) -> tuple[str, float | None]:
    """'p50 / p99' of the expected-OK group, or why there is none."""
    if (why := _missing(row)) is not None:
        return why, None
    g = row.groups.get(name)
    if not g:
        return "no data", None
    if g["ok"] == 0:
        t = timeout or row.extra.get("answer_timeout_s")
        if g["timeouts"]:
            return f"no answer within {t or '?'} s ({g['timeouts']} tries)", None
        return f"no OK answer ({g['errors']} errors, {g['no']} NO)", None
    text = f"p50 {_fmt_ms(g['p50_ms'])} / p99 {_fmt_ms(g['p99_ms'])}"
    if g["mismatch"]:
        text += f" ({g['mismatch']} wrong/missing answers)"
    return text, g["p99_ms"]


def _rps(row: Row | None, groups: list[str] | None = None) -> tuple[str, float | None]:
    if (why := _missing(row)) is not None:
        return why, None
    gs = [g for n, g in row.groups.items() if groups is None or n in groups]
    if not gs:
        return "no data", None
    good = sum(g["good_rps"] for g in gs)
    mism = sum(g["mismatch"] for g in gs)
    text = f"{good:,.0f} req/s"
    if mism:
        text += f" ({mism} wrong answers, not counted)"
    return text, good


def summarise(rows: list[Row]) -> list[Line]:
    by: dict[str, dict[str, Row]] = {}
    for r in rows:
        by.setdefault(r.scenario, {})[r.daemon] = r
    lines: list[Line] = []

    def ours(rs: dict[str, Row]) -> list[tuple[str, Row]]:
        return [(label, r) for label, r in rs.items() if label != C_LABEL]

    def ratio(ours: float | None, c: float | None) -> str:
        if ours is None or c is None or c == 0:
            return "—"
        return f"{ours / c:.2f}×"

    def add_throughput(sc: str, metric: str, target: float) -> None:
        rs = by.get(sc)
        if not rs:
            return
        c_text, c_val = _rps(rs.get(C_LABEL))
        for label, r in ours(rs):
            o_text, o_val = _rps(r)
            met = "—" if o_val is None or c_val is None else (
                "yes" if o_val / c_val >= target else "no")
            lines.append(Line(sc, r.title, metric, c_text, label, o_text, ratio(o_val, c_val),
                              f"≥ {target:.1f}×", met, c_val, o_val))

    add_throughput("1", "throughput", 1.0)
    rs = by.get("2")
    if rs:
        c_text, _ = _latency(rs.get(C_LABEL), "hits")
        c_g = _g(rs.get(C_LABEL), "hits")
        for label, r in ours(rs):
            o_text, _ = _latency(r, "hits")
            o_g = _g(r, "hits")
            c50 = c_g["p50_ms"] if c_g and c_g["ok"] else None
            o50 = o_g["p50_ms"] if o_g and o_g["ok"] else None
            met = "—" if c50 is None or o50 is None else ("yes" if o50 / c50 <= 1.0 else "no")
            lines.append(Line("2", r.title, "latency (p50 ratio)", c_text, label, o_text,
                              ratio(o50, c50), "≤ 1.0× (p50)", met, c50, o50))
    add_throughput("3", "throughput", 1.0)
    for sc in ("4-pam", "4-shadow", "5"):
        rs = by.get(sc)
        if not rs:
            continue
        target = 100.0 if sc == "5" else 50.0
        c_text, c_val = _latency(rs.get(C_LABEL), "legit")
        for label, r in ours(rs):
            o_text, o_val = _latency(r, "legit")
            met = "—" if o_val is None else ("yes" if o_val <= target else "no")
            if o_val is None and r.groups.get("legit") is not None:
                met = "no"
            if sc == "5" and (r.extra.get("idle_resets") or r.groups["legit"]["errors"]):
                met = "no (connections reset)"
            lines.append(Line(sc, r.title, "correct user's latency", c_text, label, o_text,
                              ratio(o_val, c_val), f"p99 ≤ {target:.0f} ms", met, c_val, o_val))
    add_throughput("6", "throughput", 1.0)
    add_throughput("6-custom", "throughput", 1.0)
    rs = by.get("mem")
    if rs:
        c_row = rs.get(C_LABEL)
        c_kb = c_row.extra.get("memory_kb") if c_row and not c_row.error else None
        c_text = f"{c_kb / 1024:.1f} MB (fixed mmap)" if c_kb else "—"
        for label, r in ours(rs):
            kb = r.extra.get("memory_kb") if not r.error else None
            g = r.groups.get("fill")
            o_text = f"error: {r.error[:80]}" if r.error else f"{kb / 1024:.1f} MB RSS"
            if g and g["mismatch"]:
                o_text += f" ({g['mismatch']} fills failed)"
            met = "—" if kb is None else ("yes" if kb / 1024 <= 60 else "no")
            lines.append(Line("mem", r.title, "memory", c_text, label, o_text, "—", "≤ 60 MB",
                              met, None, kb / 1024 if kb else None))
    return lines


def write_markdown(path: Path, rows: list[Row], info: dict[str, str], settings: dict[str, str],
                   plot_name: str | None, profile_top: str | None) -> None:
    lines = summarise(rows)
    out = ["# Benchmark: saslauthpy vs the C saslauthd", "",
           "Generated by `python bench/run.py` (see docs/performance.md). Both daemons run "
           "one after the other in the same run, on the same machine, driven by the same "
           "compiled load generator (`bench/loadgen.c`), with the same mechanism, users "
           f"and `-n {settings.get('threads', '5')}`. Only answers that match the expected "
           "one (OK for correct logins, NO for guesses) count as throughput.", "",
           "## Machine", "",
           f"- CPU: {info['cpu']} × {info['nproc']} (nproc)",
           f"- memory: {info['memory']}, kernel {info['kernel']}",
           f"- saslauthpy's Python: {info['python']}",
           f"- reference: {info['c']}",
           f"- run: {info['date']}; " + ", ".join(f"{k} {v}" for k, v in settings.items()),
           "", "## Summary (ratio = saslauthpy / C)", "",
           "| # | scenario | metric | C saslauthd | saslauthpy | ours/C | target | met |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for ln in lines:
        name = ln.title if ln.ours_label == "saslauthpy" else f"{ln.title} [{ln.ours_label}]"
        out.append(f"| {ln.scenario} | {name} | {ln.metric} | {ln.c} | {ln.ours} | {ln.ratio} "
                   f"| {ln.target} | {ln.met} |")
    if plot_name:
        out += ["", f"![ours vs C]({plot_name})"]
    out += ["", "## Every measurement", "",
            "| # | daemon | group | clients | expect | requests | OK | NO | errors | timeouts "
            "| mismatch | answers/s | p50 ms | p99 ms | max ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- |"]
    for r in rows:
        if r.error:
            out.append(f"| {r.scenario} | {r.daemon} | — | | | | | | | | | | | | {r.error[:120]} |")
            continue
        for g in r.groups.values():
            out.append(
                f"| {r.scenario} | {r.daemon} | {g['group']} | {g['clients']} | {g['expect']} "
                f"| {g['requests']} | {g['ok']} | {g['no']} | {g['errors']} | {g['timeouts']} "
                f"| {g['mismatch']} | {g['rps']:.1f} | {g['p50_ms']:.2f} | {g['p99_ms']:.2f} "
                f"| {g['max_ms']:.2f} |")
        if r.extra:
            extras = ", ".join(f"{k}={v}" for k, v in r.extra.items())
            out.append(f"| {r.scenario} | {r.daemon} | ({extras}) | | | | | | | | | | | | |")
    if profile_top:
        out += ["", "## Profile of saslauthpy during scenario 1 (py-spy, own time)", "",
                "```", profile_top.rstrip(), "```"]
    path.write_text("\n".join(out) + "\n")


def write_plot(path: Path, rows: list[Row]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    lines = summarise(rows)
    thr = [ln for ln in lines if ln.metric == "throughput"]
    lat = [ln for ln in lines if ln.scenario in ("2", "4-pam", "4-shadow", "5")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    _bars(ax1, thr, "answers/s (higher is better; log)", log=True)
    _bars(ax2, lat, "correct user's p99 / p50 for #2, ms (lower is better; log)", log=True,
          missing="no answer")
    fig.suptitle("saslauthpy vs C saslauthd (same machine, same load generator)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bars(ax, lines: list[Line], ylabel: str, log: bool, missing: str = "n/a") -> None:
    labels = [f"#{ln.scenario}" + ("" if ln.ours_label == "saslauthpy"
                                   else "\n" + ln.ours_label.removeprefix("saslauthpy").strip(" ,")
                                   .replace("accept=", ""))
              for ln in lines]
    xs = range(len(lines))
    w = 0.38
    values = [v for ln in lines for v in (ln.c_value, ln.ours_value) if v] or [1.0]
    bottom = min(values) / 2 if log else 0.0
    for off, attr, name, color in ((-w / 2, "c_value", C_LABEL, "#999999"),
                                   (w / 2, "ours_value", "saslauthpy", "#2a7ab9")):
        vals = [getattr(ln, attr) for ln in lines]
        ax.bar([x + off for x in xs], [v if v else 0 for v in vals], w, label=name, color=color)
        for x, v in zip(xs, vals, strict=True):
            if not v:
                ax.text(x + off, bottom if log else max(values) * 0.02, missing, rotation=90,
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=bottom / 1.5)
    ax.legend(fontsize=8)
