"""From phase outcomes to figures: per-phase summaries, the relay-versus-direct sweep, the knee,
the JSON report and the plain-text table printed at the end (and pasted into docs/performance.md).

Relay-added latency is the relay phase's quantile minus the direct phase's quantile at the same N
(the sessions differ, so quantiles are compared, not pairs). CPU µs per session-frame is a
process's CPU time divided by the session-frames it carried: N sessions x 50 frames per second
(one 20 ms slot of one session, whatever crossed it in either direction) — the unit of
reference/physical-limits.md's "relay CPU per round trip".
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

import orjson

from loadtest.config import DIRECT, RELAY, RunConfig
from loadtest.orchestrator import PhaseOutcome, others_percent
from loadtest.pacing import FRAME_MS
from loadtest.procstat import CORES, cpu_model
from loadtest.recording import REPO
from loadtest.stats import describe
from loadtest.tally import Tally

FRAMES_PER_S: Final = 1000 // FRAME_MS
KNEE_MS: Final = float(FRAME_MS)  # the knee: p99 relay-added first-audio latency crosses one frame


def per_session_frame_us(cpu_percent: float | None, n: int) -> float | None:
    if cpu_percent is None or n <= 0:
        return None
    return round(cpu_percent / 100 * 1e6 / (n * FRAMES_PER_S), 1)


def per_message_us(cpu_percent: float | None, messages: int, seconds: float) -> float | None:
    """CPU per audio message relayed (one read and one write each), either direction."""
    if cpu_percent is None or messages <= 0 or seconds <= 0:
        return None
    return round(cpu_percent / 100 * seconds * 1e6 / messages, 1)


def merge(outcomes: list[PhaseOutcome]) -> PhaseOutcome:
    """Rounds of the same (target, N) as one: samples pooled, CPU averaged, RSS at its peak."""
    first = outcomes[0]
    tally = Tally(window=first.window)
    for o in outcomes:
        tally.merge(o.tally)
    cpu: dict[str, list[float]] = defaultdict(list)
    rss: dict[str, int] = {}
    busy: list[float] = []
    for o in outcomes:
        for name, value in (o.processes.get("cpu_percent") or {}).items():
            if value is not None:
                cpu[name].append(value)
        for name, value in (o.processes.get("rss_max_bytes") or {}).items():
            if value is not None:
                rss[name] = max(rss.get(name, 0), value)
        if o.processes.get("client_cpu_percent_exact") is not None:
            busy.append(o.processes["client_cpu_percent_exact"])
    processes: dict[str, Any] = {
        "cpu_percent": {k: round(sum(v) / len(v), 1) for k, v in cpu.items()},
        "rss_max_bytes": rss,
        "client_cpu_percent_exact": round(sum(busy) / len(busy), 1) if busy else None,
        "rounds": len(outcomes),
    }
    failures = [f for o in outcomes for f in o.worker_failures]
    return PhaseOutcome(first.target, first.n, -1, first.window, tally, processes, first.profile, failures)


def rounds_of(o: PhaseOutcome) -> int:
    return int(o.processes.get("rounds", 1))


def summarize(o: PhaseOutcome, prebuffer_ms: float) -> dict[str, Any]:
    t, c, n = o.tally, o.tally.counts, o.n
    seconds = (o.window[1] - o.window[0]) * max(1, rounds_of(o))
    # Audio messages the relay carried in the window: client frames in, answer chunks out.
    audio_messages = c["frames_sent"] + c["audio_messages_received"]
    cpu = dict(o.processes.get("cpu_percent") or {})
    # The workers time their own CPU exactly over the window; /proc sampling is the fallback.
    client = o.processes.get("client_cpu_percent_exact")
    if client is not None:
        cpu["client"] = client
    others = others_percent(o.processes)
    if others is not None:  # CPU the run did not account for: other work on the box (noise)
        cpu["others"] = round(others, 1)
    rss = {k: round(v / 2**20, 1) for k, v in (o.processes.get("rss_max_bytes") or {}).items() if v is not None}
    return {
        "target": o.target,
        "n": n,
        "round": o.round,
        "first_audio_ms": describe(t.first_audio_ms),
        "turns": c["turns"],
        "no_response": c["no_response"],
        "early_responses": c["early_responses"],
        "responses": {
            "started": c["responses"],
            "completed": c["responses_completed"],
            "cancelled": c["responses_cancelled"],
            "other": c["responses_other"],
        },
        "sender": {
            "frames_sent": c["frames_sent"],
            "frames_skipped": c["frames_skipped"],
            "late_over_one_frame": t.lateness_ms.count_above(FRAME_MS),
            "lateness_ms": t.lateness_ms.summary(),
        },
        "playout": {
            "prebuffer_ms": prebuffer_ms,
            "underruns": c["underruns"],
            "underrun_ms": round(t.underrun_ms, 1),
            "gap_ms": t.gap_ms.summary(),
            "jitter_buffer_needed_ms": t.behind_ms.summary(),
        },
        "delivery": {
            "lost_responses": c["lost_responses"],
            "lost_ms": round(t.lost_ms, 1),
            "audio_out_reported_ms": c["audio_out_reported_ms"],
            "audio_received_ms": c["audio_received_ms"],
        },
        "sessions": {
            "opened": c["sessions_opened"],
            "failed": c["sessions_failed"],
            "closed_ok": c["sessions_closed_ok"],
        },
        "errors": dict(t.errors),
        "error_count": sum(t.errors.values()),
        "closes": dict(t.closes),
        "cpu_percent": cpu,
        "rss_mb": rss,
        "us_per_session_frame": {
            name: per_session_frame_us(cpu.get(name), n) for name in ("relay", "emulator", "client")
        },
        "audio_messages_per_s": round(audio_messages / seconds, 1),
        "relay_us_per_audio_message": per_message_us(cpu.get("relay"), audio_messages, seconds),
        "profile": o.profile,
        "worker_failures": o.worker_failures,
    }


def _added(relay: dict[str, Any], direct: dict[str, Any] | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in ("p50", "p95", "p99"):
        r = relay["first_audio_ms"][q]
        d = direct["first_audio_ms"][q] if direct is not None else None
        out[q] = round(r - d, 3) if r is not None and d is not None else None
    return out


def sweep(outcomes: list[PhaseOutcome], prebuffer_ms: float) -> list[dict[str, Any]]:
    groups: dict[tuple[int, str], list[PhaseOutcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.n, o.target)].append(o)
    rows: list[dict[str, Any]] = []
    for n in sorted({o.n for o in outcomes}):
        relay = summarize(merge(groups[(n, RELAY)]), prebuffer_ms) if groups.get((n, RELAY)) else None
        direct = summarize(merge(groups[(n, DIRECT)]), prebuffer_ms) if groups.get((n, DIRECT)) else None
        added = _added(relay, direct) if relay is not None else {}
        rows.append({"n": n, "relay": relay, "direct": direct, "added_ms": added})
    return rows


def _crossing(points: list[tuple[int, float, float | None]], threshold: float) -> dict[str, Any]:
    """First sweep point whose value exceeds ``threshold``, interpolated linearly from the one before."""
    result: dict[str, Any] = {"n": None, "relay_cpu_percent": None, "found": "no data"}
    below: tuple[int, float, float | None] | None = None
    for point in points:
        n, value, cpu = point
        if value > threshold:
            if below is None:
                result["found"] = f"already above at N={n}, the smallest N run"
            else:
                n0, v0, c0 = below
                f = (threshold - v0) / (value - v0)
                at_cpu = c0 + f * (cpu - c0) if c0 is not None and cpu is not None else None
                at_n = round(n0 + f * (n - n0), 1)
                result.update(found=f"between N={n0} and N={n}", n=at_n, relay_cpu_percent=at_cpu)
            break
        below = point
    else:
        if points:
            result.update(found=f"not reached up to N={points[-1][0]}", relay_cpu_percent=points[-1][2])
    n_knee, cpu_knee = result["n"], result["relay_cpu_percent"]
    if cpu_knee is not None:
        result["relay_cpu_percent"] = round(cpu_knee, 1)
    if n_knee is not None and cpu_knee:
        # Sessions one fully used relay core would carry at the per-session cost measured at the knee.
        result["sessions_per_relay_core"] = round(n_knee / (cpu_knee / 100), 1)
    if n_knee is not None:
        result["sessions_per_box_core"] = round(n_knee / CORES, 1)
    return result


def knee(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where p99 relay-added first-audio latency crosses one frame (20 ms), between sweep points.

    ``absolute``: relay p99 minus direct p99 > 20 ms, as asked. ``over_low_load``: the same quantity
    minus its value at the smallest N > 20 ms — the knee due to load alone, when the relay adds a
    constant latency at any load (e.g. a resampler's block delay in front of the provider's VAD).
    """
    points = [
        (r["n"], r["added_ms"]["p99"], r["relay"]["cpu_percent"].get("relay"))
        for r in rows
        if r["relay"] is not None and r["added_ms"].get("p99") is not None
    ]
    baseline = points[0][1] if points else 0.0
    return {
        "threshold_ms": KNEE_MS,
        "absolute": _crossing(points, KNEE_MS),
        "low_load_p99_added_ms": baseline,
        "over_low_load": _crossing([(n, v - baseline, c) for n, v, c in points], KNEE_MS),
    }


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": CORES, "python": sys.version.split()[0], "platform": platform.platform()}


def code_version() -> dict[str, Any]:
    """Which relay was measured: the commit, and a digest of uncommitted changes to the code under
    test (the working tree may differ from the commit while someone works on the hot path)."""

    def git(*args: str) -> bytes | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    paths = ("relay", "providers", "audiocodecs")
    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", *paths)
    diff = git("diff", "HEAD", "--", *paths)
    return {
        "commit": head.decode().strip() if head else None,
        "changed_files": len(status.splitlines()) if status is not None else None,
        "diff_sha1": hashlib.sha1(diff).hexdigest()[:12] if diff else None,
    }


def build(config: RunConfig, outcomes: list[PhaseOutcome], series: list[dict[str, Any]]) -> dict[str, Any]:
    rows = sweep(outcomes, config.prebuffer_ms)
    return {
        "machine": machine(),
        "code": code_version(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in _config_items(config)},
        "sweep": rows,
        "knee": knee(rows) if config.compare else None,
        "phases": [
            {**summarize(o, config.prebuffer_ms), "raw": o.tally.to_json(), "processes": o.processes} for o in outcomes
        ],
        "cpu_series": series,
    }


def rebuild(old: dict[str, Any]) -> dict[str, Any]:
    """Recompute every derived figure of a saved report from its raw per-phase data (no new run):
    for a report written by an older version, or to re-plot."""
    outcomes = [
        PhaseOutcome(
            p["target"],
            p["n"],
            p["round"],
            (p["raw"]["window"][0], p["raw"]["window"][1]),
            Tally.from_json(p["raw"]),
            p["processes"],
            p.get("profile"),
            p.get("worker_failures", []),
        )
        for p in old["phases"]
    ]
    prebuffer_ms, compare = old["config"]["prebuffer_ms"], old["config"]["compare"]
    rows = sweep(outcomes, prebuffer_ms)
    phases = [{**summarize(o, prebuffer_ms), "raw": o.tally.to_json(), "processes": o.processes} for o in outcomes]
    return {**old, "sweep": rows, "knee": knee(rows) if compare else None, "phases": phases}


def _config_items(config: RunConfig) -> list[tuple[str, Any]]:
    return [(name, getattr(config, name)) for name in config.__dataclass_fields__]


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def _f(value: Any, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    """The sweep as a Markdown table: relay and direct rows per N."""
    head = (
        "| N | target | first audio p50 / p95 / p99 (ms) | relay-added p99 (ms) | relay CPU % | relay RSS MB "
        "| relay µs/session-frame | emulator CPU % | client CPU % | box CPU % (others) | underruns (total ms) "
        "| late/skipped frames | lost responses | errors |"
    )
    lines = [head, "|" + "---|" * 14]
    for row in rows:
        for target in (DIRECT, RELAY):
            s = row[target]
            if s is None:
                continue
            fa = s["first_audio_ms"]
            added = _f(row["added_ms"].get("p99")) if target == RELAY else ""
            cpu, rss = s["cpu_percent"], s["rss_mb"]
            late = f"{s['sender']['late_over_one_frame']}/{s['sender']['frames_skipped']}"
            box = f"{_f(cpu.get('machine'), '.0f')} ({_f(cpu.get('others'), '.0f')})"
            lines.append(
                f"| {row['n']} | {target} | {_f(fa['p50'])} / {_f(fa['p95'])} / {_f(fa['p99'])} | {added} "
                f"| {_f(cpu.get('relay'))} | {_f(rss.get('relay'), '.0f') if target == RELAY else ''} "
                f"| {_f(s['us_per_session_frame']['relay']) if target == RELAY else ''} "
                f"| {_f(cpu.get('emulator'))} | {_f(cpu.get('client'))} | {box} "
                f"| {s['playout']['underruns']} ({_f(s['playout']['underrun_ms'], '.0f')}) | {late} "
                f"| {s['delivery']['lost_responses']} | {s['error_count']} |"
            )
    return "\n".join(lines)


def knee_text(k: dict[str, Any] | None) -> str:
    if k is None:
        return "knee: needs --compare (relay-added latency is relay minus direct)"
    lines = []
    for key, label in (
        ("absolute", f"p99 relay-added first audio > {k['threshold_ms']:.0f} ms"),
        (
            "over_low_load",
            f"the same > {k['threshold_ms']:.0f} ms above its {k['low_load_p99_added_ms']:.1f} ms at the lowest N",
        ),
    ):
        c = k[key]
        text = f"knee ({label}): {c['found']}"
        if c.get("n") is not None:
            text += f", N ≈ {c['n']}"
        if c.get("relay_cpu_percent") is not None:
            text += f", relay CPU ≈ {c['relay_cpu_percent']:.0f} %"
        if c.get("sessions_per_relay_core") is not None:
            text += f" → ≈ {c['sessions_per_relay_core']:.0f} sessions per relay core"
        if c.get("sessions_per_box_core") is not None:
            text += f" ({c['sessions_per_box_core']:.0f} per core of this {CORES}-core box)"
        lines.append(text)
    return "\n".join(lines)
