"""Optional: sample the relay with py-spy during a relay phase and rank functions by self time.

py-spy (``pip install py-spy``; not a project dependency) attaches to the running relay by pid,
without pausing it (``--nonblocking``), and writes collapsed stacks (``--format raw``: one line per
distinct stack, ``frame;frame;…;leaf count``). The leaf of a stack is where the interpreter was
when sampled, so summing counts by leaf gives *self* time; idle samples are left out by py-spy,
so the percentages are of the time the relay was busy. The raw file also feeds flamegraph.pl or
speedscope for a picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

SAMPLE_RATE_HZ: Final = 100
TOP: Final = 20
OWN_PACKAGES: Final = ("relay/", "providers/", "audiocodecs/")
_LINE_NUMBER: Final = re.compile(r":\d+\)$")


def py_spy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record(pid: int, duration_s: float, output: Path) -> bool:
    """Sample ``pid`` for ``duration_s`` into ``output``; False if py-spy is missing or failed."""
    exe = py_spy_path()
    if exe is None:
        return False
    output.parent.mkdir(parents=True, exist_ok=True)
    args = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s)))]
    args += ["--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--nonblocking", "--output", str(output)]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await asyncio.wait_for(proc.wait(), duration_s + 30)
    except TimeoutError:
        return False
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave py-spy attached to the relay
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode == 0


def top_self(collapsed: Path, top: int = TOP) -> dict[str, Any] | None:
    """Functions ranked by self samples (line numbers folded: one row per function and file)."""
    if not collapsed.exists():
        return None
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        self_counts[frames[-1]] += count
        for frame in set(frames):
            total_counts[frame] += count

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "percent": round(100 * n / samples, 1) if samples else 0.0}
            for name, n in counter.most_common(top)
        ]

    # Inclusive time of the project's own functions: which of our code paths the busy time is under
    # (the shared stack roots — runpy, uvicorn, the event loop — would otherwise fill the list).
    own = Counter({name: n for name, n in total_counts.items() if _own(name)})
    return {"file": str(collapsed), "samples": samples, "top_self": rows(self_counts), "top_own_total": rows(own)}


def _own(frame: str) -> bool:
    _, _, where = frame.rpartition(" (")
    return where.startswith(OWN_PACKAGES) and not where.startswith("relay/cli.py")
