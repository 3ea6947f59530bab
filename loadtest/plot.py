"""The run as one PNG: first-audio CDFs per N (relay solid, direct dashed), p99 and relay-added
latency against N, and CPU % of each process against N. matplotlib with the Agg backend (no
display needed); imported only when a PNG is asked for, so the harness runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from loadtest.config import DIRECT, RELAY
from loadtest.report import KNEE_MS

DPI: Final = 80  # ≈ 900 x 640 px: readable in the docs, well under 300 KB


def render(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["sweep"]
    raw: dict[tuple[str, int], list[float]] = {(p["target"], p["n"]): [] for p in report["phases"]}
    for phase in report["phases"]:
        raw[(phase["target"], phase["n"])].extend(phase["raw"]["first_audio_ms"])
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8))
    cdf, p99, added, cpu = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    colors = plt.get_cmap("viridis")
    ns = [r["n"] for r in rows]
    for i, n in enumerate(ns):
        color = colors(i / max(1, len(ns) - 1) * 0.85)
        for target, style in ((RELAY, "-"), (DIRECT, "--")):
            values = sorted(raw.get((target, n), []))
            if values:
                ys = [(k + 1) / len(values) for k in range(len(values))]
                cdf.step(values, ys, style, color=color, where="post", label=f"{target} N={n}", linewidth=1.3)
    cdf.set(title="First audio after end of turn (CDF)", xlabel="ms", ylabel="fraction of turns")
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=7, ncol=2)

    for target, style in ((RELAY, "o-"), (DIRECT, "s--")):
        points = [(r["n"], r[target]["first_audio_ms"]["p99"]) for r in rows if r[target] is not None]
        points = [(n, v) for n, v in points if v is not None]
        if points:
            p99.plot(*zip(*points, strict=True), style, label=f"{target} p99")
        points = [(r["n"], r[target]["first_audio_ms"]["p50"]) for r in rows if r[target] is not None]
        points = [(n, v) for n, v in points if v is not None]
        if points:
            p99.plot(*zip(*points, strict=True), style, alpha=0.4, label=f"{target} p50")
    p99.set(title="First audio latency against N", xlabel="concurrent sessions N", ylabel="ms")
    p99.grid(alpha=0.3)
    p99.legend(fontsize=8)

    for q, style in (("p99", "o-"), ("p95", "^-"), ("p50", "s-")):
        points = [(r["n"], r["added_ms"].get(q)) for r in rows]
        points = [(n, v) for n, v in points if v is not None]
        if points:
            added.plot(*zip(*points, strict=True), style, label=f"relay minus direct, {q}")
    added.axhline(KNEE_MS, color="red", linewidth=0.8, linestyle=":", label=f"one frame ({KNEE_MS:.0f} ms)")
    added.set(title="Latency the relay adds", xlabel="concurrent sessions N", ylabel="ms")
    added.grid(alpha=0.3)
    added.legend(fontsize=8)

    for name, style in (("relay", "o-"), ("emulator", "s-"), ("client", "^-"), ("machine", "k:")):
        points = [(r["n"], r[RELAY]["cpu_percent"].get(name)) for r in rows if r[RELAY] is not None]
        points = [(n, v) for n, v in points if v is not None]
        if points:
            label = "whole box (of 200 %)" if name == "machine" else f"{name} (relay phase)"
            cpu.plot(*zip(*points, strict=True), style, label=label)
    points = [(r["n"], r[DIRECT]["cpu_percent"].get("emulator")) for r in rows if r[DIRECT] is not None]
    points = [(n, v) for n, v in points if v is not None]
    if points:
        cpu.plot(*zip(*points, strict=True), "s--", alpha=0.5, label="emulator (direct phase)")
    cpu.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    cpu.set(title="CPU against N (100 % = one core)", xlabel="concurrent sessions N", ylabel="CPU %")
    cpu.grid(alpha=0.3)
    cpu.legend(fontsize=8)

    machine = report.get("machine", {})
    fig.suptitle(f"Realtime Relay load test — {machine.get('cores', '?')} cores, {machine.get('cpu', '')}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
