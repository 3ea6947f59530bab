"""Micro-benchmark: audiocodecs wrappers versus the raw library calls they wrap, per 20 ms frame.

    .venv/bin/python -m loadtest.codec_bench [--repeats N] [--json results.json]

Each row times the wrapper and a raw baseline over the same real speech frames (tests/audio), in the
same process, interleaved: every repeat runs one pass of each, in alternating order, with the garbage
collector off; the table shows the median over the repeats of the mean µs per frame. Baselines have
the same I/O shape as the wrapper (bytes in, bytes out where the wrapper takes and gives bytes), so the
overhead column is the cost of the wrapper's own Python, not of a different amount of work.
Target: overhead <= 15 % (rows whose raw call is under ~1 µs measure interpreter noise; see the notes).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
import soxr

from audiocodecs import (
    OPUS_48K,
    PCM16_24K,
    AudioFormat,
    Encoding,
    OpusDecoder,
    OpusEncoder,
    Transcoder,
    read_pcm16,
)
from audiocodecs.g711 import ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE
from audiocodecs.opus import libopus_path

INT16 = np.dtype(np.int16)
UINT8 = np.dtype(np.uint8)
UINT16 = np.dtype(np.uint16)
AUDIO = Path(__file__).resolve().parent.parent / "tests" / "audio" / "conversation-3-turns-24k.wav"
TARGET_OVERHEAD_PCT = 15.0
FRAME_MS = 20


@dataclass
class Row:
    conversion: str
    wrapper_us: float
    raw_us: float
    overhead_pct: float
    wrapper: str
    raw: str
    frames: int
    repeats: int


Step = Callable[[Any], object]


def _pass(step: Step, frames: Sequence[Any]) -> float:
    """Mean µs per frame of one pass over ``frames``."""
    start = time.perf_counter_ns()
    for frame in frames:
        step(frame)
    return (time.perf_counter_ns() - start) / len(frames) / 1000.0


def compare(
    conversion: str,
    wrapper: tuple[str, Step],
    raw: tuple[str, Step],
    frames: Sequence[Any],
    repeats: int,
) -> Row:
    (wrapper_name, wrapper_step), (raw_name, raw_step) = wrapper, raw
    for frame in frames[: min(len(frames), 20)]:  # warm up (allocations, first-call paths, codec init)
        wrapper_step(frame)
        raw_step(frame)
    wrapper_times: list[float] = []
    raw_times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for repeat in range(repeats):
            if repeat % 2:
                raw_times.append(_pass(raw_step, frames))
                wrapper_times.append(_pass(wrapper_step, frames))
            else:
                wrapper_times.append(_pass(wrapper_step, frames))
                raw_times.append(_pass(raw_step, frames))
    finally:
        gc.enable()
    wrapper_us = statistics.median(wrapper_times)
    raw_us = statistics.median(raw_times)
    overhead = (wrapper_us - raw_us) / raw_us * 100.0
    return Row(conversion, wrapper_us, raw_us, overhead, wrapper_name, raw_name, len(frames), repeats)


# --------------------------------------------------------------------------------------------- signals


def _frames(samples: npt.NDArray[np.int16], rate: int) -> list[npt.NDArray[np.int16]]:
    size = rate * FRAME_MS // 1000
    return [samples[i : i + size] for i in range(0, samples.size - size + 1, size)]


def _pcm_frames(speech: dict[int, npt.NDArray[np.int16]], rate: int) -> list[bytes]:
    return [frame.tobytes() for frame in _frames(speech[rate], rate)]


# --------------------------------------------------------------------------------------------- raw baselines


def raw_soxr(in_rate: int, out_rate: int) -> Step:
    """soxr's own int16 stream, bytes in, bytes out (note: it dithers; our wrapper does not)."""
    resample = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ").resample_chunk

    def step(data: bytes) -> bytes:
        out: npt.NDArray[np.int16] = resample(np.frombuffer(data, INT16))
        return out.tobytes()

    return step


def raw_ulaw_decode(data: bytes) -> bytes:
    return ULAW_DECODE_TABLE[np.frombuffer(data, UINT8)].tobytes()


def raw_ulaw_encode(data: bytes) -> bytes:
    return ULAW_ENCODE_TABLE[np.frombuffer(data, UINT16)].tobytes()


def raw_passthrough(data: bytes) -> list[bytes]:
    if len(data) % 2:
        raise ValueError("odd")
    return [data]


class RawPyAVEncoder:
    """PyAV libopus as physical-limits.md §1 measures it: ndarray → AudioFrame → encode → bytes."""

    def __init__(self, bitrate: int = 32000, complexity: int = 5) -> None:
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate = 48000
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = bitrate
        context.time_base = Fraction(1, 48000)
        context.options = {"application": "voip", "frame_duration": "20", "compression_level": str(complexity)}
        context.open()
        self.context = context
        self.pts = 0

    def encode(self, samples: npt.NDArray[np.int16]) -> list[bytes]:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.pts
        self.pts += samples.size
        return [bytes(packet) for packet in self.context.encode(frame)]

    def encode_bytes(self, data: bytes) -> list[bytes]:
        return self.encode(np.frombuffer(data, INT16))


def raw_pyav_decoder() -> Callable[[bytes], npt.NDArray[np.int16]]:
    context = av.CodecContext.create("libopus", "r")
    context.sample_rate = 48000
    context.layout = "mono"
    context.format = "s16"
    context.open()

    def step(packet: bytes) -> npt.NDArray[np.int16]:
        frames = context.decode(av.Packet(packet))
        return cast("npt.NDArray[np.int16]", frames[0].to_ndarray().reshape(-1))

    return step


def raw_ctypes_decoder() -> Callable[[bytes], npt.NDArray[np.int16]]:
    path = libopus_path()
    if path is None:
        raise RuntimeError("no libopus to benchmark")
    lib = ctypes.CDLL(path)
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    error = ctypes.c_int()
    handle = lib.opus_decoder_create(48000, 1, ctypes.byref(error))
    buffer = np.zeros(5760, dtype=np.int16)
    pointer = buffer.ctypes.data
    decode = lib.opus_decode

    def step(packet: bytes) -> npt.NDArray[np.int16]:
        n = decode(handle, packet, len(packet), pointer, 5760, 0)
        return buffer[:n].copy()

    return step


# --------------------------------------------------------------------------------------------- the suite


def run(repeats: int, audio: Path) -> list[Row]:
    base = read_pcm16(audio, 24000)
    speech = {rate: read_pcm16(audio, rate) if rate != 24000 else base for rate in (8000, 16000, 24000, 48000)}
    rows: list[Row] = []

    def pcm(rate: int) -> AudioFormat:
        return AudioFormat(Encoding.PCM16, rate)

    for in_rate, out_rate in ((16000, 24000), (24000, 16000), (24000, 48000), (48000, 24000)):
        transcoder = Transcoder(pcm(in_rate), pcm(out_rate))
        rows.append(
            compare(
                f"resample {in_rate // 1000}k->{out_rate // 1000}k (pcm16 bytes->bytes)",
                ("Transcoder.feed", transcoder.feed),
                ("frombuffer+soxr int16 resample_chunk+tobytes", raw_soxr(in_rate, out_rate)),
                _pcm_frames(speech, in_rate),
                repeats,
            )
        )

    ulaw_frames = [raw_ulaw_encode(frame) for frame in _pcm_frames(speech, 8000)]
    rows.append(
        compare(
            "ulaw 8k -> pcm16 8k (decode)",
            ("Transcoder.feed", Transcoder(AudioFormat(Encoding.ULAW, 8000), pcm(8000)).feed),
            ("frombuffer+table[]+tobytes", raw_ulaw_decode),
            ulaw_frames,
            repeats,
        )
    )
    rows.append(
        compare(
            "pcm16 8k -> ulaw 8k (encode)",
            ("Transcoder.feed", Transcoder(pcm(8000), AudioFormat(Encoding.ULAW, 8000)).feed),
            ("frombuffer+table[]+tobytes", raw_ulaw_encode),
            _pcm_frames(speech, 8000),
            repeats,
        )
    )

    opus_repeats = max(3, repeats // 2)
    frames_48k = _frames(speech[48000], 48000)
    rows.append(
        compare(
            "opus encode 48k 20 ms (int16 -> packet)",
            ("OpusEncoder.encode", OpusEncoder().encode),
            ("PyAV from_ndarray+encode+bytes", RawPyAVEncoder().encode),
            frames_48k,
            opus_repeats,
        )
    )
    rows.append(
        compare(
            "opus encode 48k 20 ms (pcm16 bytes -> packet)",
            ("Transcoder.feed", Transcoder(pcm(48000), OPUS_48K).feed),
            ("PyAV frombuffer+from_ndarray+encode+bytes", RawPyAVEncoder().encode_bytes),
            [frame.tobytes() for frame in frames_48k],
            opus_repeats,
        )
    )

    packets = OpusEncoder().encode(speech[48000])
    rows.append(
        compare(
            "opus decode (packet -> int16)",
            ("OpusDecoder.decode (ctypes libopus)", OpusDecoder().decode),
            ("PyAV Packet+decode+to_ndarray", raw_pyav_decoder()),
            packets,
            repeats,
        )
    )
    rows.append(
        compare(
            "opus decode (packet -> int16), same library",
            ("OpusDecoder.decode (ctypes libopus)", OpusDecoder().decode),
            ("raw ctypes opus_decode+copy", raw_ctypes_decoder()),
            packets,
            repeats,
        )
    )
    pyav_decode = raw_pyav_decoder()
    rows.append(
        compare(
            "opus 48k -> pcm16 48k (packet -> bytes)",
            ("Transcoder.feed", Transcoder(OPUS_48K, pcm(48000)).feed),
            ("PyAV Packet+decode+to_ndarray+tobytes", lambda packet: pyav_decode(packet).tobytes()),
            packets,
            repeats,
        )
    )

    rows.append(
        compare(
            "fast path src == dst (pcm16 24k)",
            ("Transcoder.feed", Transcoder(PCM16_24K, PCM16_24K).feed),
            ("a Python function: parity check + [data]", raw_passthrough),
            _pcm_frames(speech, 24000),
            repeats,
        )
    )
    return rows


def _us(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def render(rows: Sequence[Row]) -> str:
    header = ("conversion", "wrapper µs", "raw µs", "overhead %", "wrapper", "raw baseline (same I/O shape)")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.conversion,
                _us(row.wrapper_us),
                _us(row.raw_us),
                f"{row.overhead_pct:+.1f}",
                row.wrapper,
                row.raw,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(out)


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "soxr": soxr.__version__,
        "av": av.__version__,
        "libopus": libopus_path() or "(PyAV fallback)",
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.codec_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="passes per row (median taken); opus rows use half")
    parser.add_argument("--audio", type=Path, default=AUDIO, help="speech file to cut 20 ms frames from")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run(args.repeats, args.audio)
    elapsed = time.perf_counter() - started
    env = environment()
    print(" ".join(f"{key}={value}" for key, value in env.items()))
    print(f"µs per 20 ms frame, median of {args.repeats} interleaved passes over {args.audio.name}; {elapsed:.1f} s")
    print(render(rows))
    over = [row.conversion for row in rows if row.overhead_pct > TARGET_OVERHEAD_PCT]
    print(
        f"target overhead <= {TARGET_OVERHEAD_PCT:.0f} %: " + ("met by every row" if not over else f"missed by {over}")
    )
    if args.json is not None:
        payload = {"environment": env, "elapsed_s": elapsed, "rows": [asdict(row) for row in rows]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
