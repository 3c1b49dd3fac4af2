#!/usr/bin/env python3
"""The GRAM study's results, made from its record: results.json, results.md and results.svg.

    python3 scripts/study-report.py [RECORD]    # RECORD defaults to scripts/study-results

RECORD is what `scripts/quality-study.sh` keeps of every finished step: reports/ARM/BENCH.json
(a `gram eval --report`) and runs/RUN.seconds + runs/RUN.metrics.csv (a training run's wall
seconds, one line per segment, and its per-step metrics). Every arm with a report or a training
run is listed, whatever label budgets the last run of the study was given: the untrained model
first, then budget by budget, in the order bt, stage2, gram, gram-eps0.

results.svg is a forest plot: one panel per benchmark, one row per arm, a dot at its accuracy
and a bar over its 95 % bootstrap interval, and a dashed line at 50 % (chance).
"""

import csv
import json
import os
import sys
from html import escape

BENCHES = [("hh", "HH helpful-base (500)"), ("rm-bench", "RM-Bench (720)"), ("llmbar", "LLMBar (419)")]
KINDS = ["bt", "stage2", "gram", "gram-eps0"]
COLOURS = {"untrained": "#777777", "bt": "#d95f02", "stage2": "#1b9e77", "gram": "#7570b3", "gram-eps0": "#e7298a"}


def budget_and_kind(name):
    """`stage2-1000` → (1000, 1), the order arms are listed in; None for stage 1 or untrained."""
    kind, _, budget = name.rpartition("-")
    return (int(budget), KINDS.index(kind)) if kind in KINDS and budget.isdigit() else None


def budget_and_name(arm):
    """`stage2-1000` → (1000, "stage2"); the untrained model → (0, "untrained")."""
    order = budget_and_kind(arm)
    return (order[0], KINDS[order[1]]) if order else (0, "untrained")


def cost(record, run):
    """What a run cost: wall seconds (every segment, loading and export included), the steps'
    own seconds and training tokens (from metrics.csv's per-step wall time and tokens/s)."""
    seconds_file = os.path.join(record, "runs", run + ".seconds")
    if not os.path.exists(seconds_file):
        return None
    seconds = sum(int(line) for line in open(seconds_file) if line.strip())
    rows = list(csv.DictReader(open(os.path.join(record, "runs", run + ".metrics.csv"))))
    entry = {"seconds": seconds, "steps": len(rows)}
    entry["step_seconds"] = round(sum(float(r["seconds"]) for r in rows))
    entry["tokens"] = round(sum(float(r["seconds"]) * float(r["tokens_per_s"]) for r in rows))
    return entry


def results(record):
    """Every recorded arm: its training cost and each benchmark's score, interval and position
    consistency (fractions, not percent)."""
    recorded = set(os.listdir(os.path.join(record, "reports")))
    runs = os.listdir(os.path.join(record, "runs"))
    recorded |= {f.removesuffix(".seconds") for f in runs if f.endswith(".seconds")}
    arms = ["untrained"] + sorted(filter(budget_and_kind, recorded), key=budget_and_kind)
    stage1 = cost(record, "stage1")
    out = {"arms": {}}
    for arm in arms:
        entry = {"benchmarks": {}}
        if arm != "untrained":
            entry["training"] = cost(record, arm)
            if arm.startswith("gram") and entry["training"]:
                entry["stage1"] = stage1
        for bench, _ in BENCHES:
            path = os.path.join(record, "reports", arm, bench + ".json")
            if os.path.exists(path):
                report = json.load(open(path))
                entry["benchmarks"][bench] = {
                    "score": report["overall"]["accuracy"],
                    "count": report["overall"]["count"],
                    "interval": report.get("interval"),
                    "consistency": report["consistency"]["rate"],
                    "entries": report["entries"],
                }
        out["arms"][arm] = entry
    return out


def table(results):
    """The Markdown table: a row per arm, a cell per benchmark, training minutes last."""
    lines = ["| arm | " + " | ".join(b for b, _ in BENCHES) + " | training (min) |"]
    lines.append("|---|" + "---|" * (len(BENCHES) + 1))
    for arm, entry in results["arms"].items():
        cells = []
        for bench, _ in BENCHES:
            b = entry["benchmarks"].get(bench)
            if b is None:
                cells.append("—")
                continue
            i = b["interval"]
            ci = f" [{100 * i['low']:.1f}, {100 * i['high']:.1f}]" if i else ""
            cells.append(f"{100 * b['score']:.1f}%{ci}, pc {100 * b['consistency']:.0f}%")
        minutes = [entry.get(k) for k in ("stage1", "training") if entry.get(k)]
        cells.append(" + ".join(f"{c['seconds'] / 60:.1f}" for c in minutes) or "—")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results):
    """The forest plot as SVG text. The x axis (accuracy, %) spans every interval, rounded out
    to tens; arms without a report for a benchmark leave their row empty in that panel."""
    arms = [a for a, e in results["arms"].items() if e["benchmarks"]]
    bounds = [
        100 * v
        for e in results["arms"].values()
        for b in e["benchmarks"].values()
        for v in ((b["interval"]["low"], b["interval"]["high"]) if b["interval"] else (b["score"],))
    ]
    lo, hi = 10 * int(min(bounds) // 10), 10 * -int(-max(bounds) // 10)
    label_w, panel_w, gap, row_h, top = 110, 230, 36, 22, 40
    width = label_w + len(BENCHES) * (panel_w + gap)
    height = top + row_h * len(arms) + 40
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for row, arm in enumerate(arms):
        y = top + row_h * row + row_h / 2
        svg.append(f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end">{escape(arm)}</text>')
    for p, (bench, title) in enumerate(BENCHES):
        x0 = label_w + p * (panel_w + gap)

        def x(percent):
            return x0 + panel_w * (percent - lo) / (hi - lo)

        bottom = top + row_h * len(arms)
        svg.append(f'<text x="{x0 + panel_w / 2}" y="{top - 16}" text-anchor="middle">{escape(title)}</text>')
        svg.append(f'<rect x="{x0}" y="{top}" width="{panel_w}" height="{bottom - top}" fill="none" stroke="#bbbbbb"/>')
        for tick in range(lo, hi + 1, 10):
            svg.append(f'<text x="{x(tick)}" y="{bottom + 16}" text-anchor="middle">{tick}</text>')
        svg.append(
            f'<line x1="{x(50)}" y1="{top}" x2="{x(50)}" y2="{bottom}" stroke="#999999" stroke-dasharray="4 3"/>'
        )
        for row in range(1, len(arms)):
            # A rule between label budgets (the untrained model counts as a budget of its own).
            if budget_and_name(arms[row])[0] != budget_and_name(arms[row - 1])[0]:
                y = top + row_h * row
                svg.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + panel_w}" y2="{y}" stroke="#e0e0e0"/>')
        for row, arm in enumerate(arms):
            b = results["arms"][arm]["benchmarks"].get(bench)
            if b is None:
                continue
            y = top + row_h * row + row_h / 2
            colour = COLOURS[budget_and_name(arm)[1]]
            if b["interval"]:
                low, high = 100 * b["interval"]["low"], 100 * b["interval"]["high"]
                svg.append(
                    f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
                )
            svg.append(f'<circle cx="{x(100 * b["score"]):.1f}" cy="{y}" r="4" fill="{colour}"/>')
    svg.append(
        f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">'
        "accuracy, % (dot) with its 95 % bootstrap interval (bar); dashed: 50 %</text>"
    )
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def write(path, text):
    """Through a temporary name, so a half-written file never looks complete."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    record = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "study-results")
    res = results(record)
    write(os.path.join(record, "results.json"), json.dumps(res, indent=1))
    write(os.path.join(record, "results.md"), table(res))
    write(os.path.join(record, "results.svg"), plot(res))
    print(table(res), end="")


if __name__ == "__main__":
    main()
