"""Benchmarks and the load harness.

``python -m loadtest`` (`loadtest.cli.main`) runs N real-time voice sessions through the relay and,
with ``--compare``, straight against the provider emulator, and reports first-audio latency, what
the relay adds to it, playout underruns, lost audio, errors and every process's CPU and memory.
See docs/performance.md. ``python -m loadtest.codec_bench`` is the codec micro-benchmark.
"""
