"""`EmulatorCommand`: the options every emulator shares (each emulator's CLI is run as a process in its own tests)."""

from __future__ import annotations

import argparse
import socket

import pytest

from providers.emulation.cli import CommonOptions, EmulatorCommand
from providers.gemini.emulator import COMMAND as GEMINI
from providers.gemini.emulator_protocol import GeminiFaults
from providers.openai.emulator import COMMAND as OPENAI
from providers.openai.emulator import OpenAIRealtimeEmulator


def test_shared_options_and_defaults() -> None:
    args = OPENAI.parse_args(["--port", "0", "--api-key", "k", "--faults", "delay_ms:5", "--chunk-ms", "20"])
    options = OPENAI.options(args)
    assert options["port"] == 0 and options["api_key"] == "k" and options["speed"] == 1.0
    assert options["faults"].delay_ms == 5.0 and options["record"] is False
    emulator = OPENAI.build(args, options)
    assert emulator.chunk_ms == 20 and emulator.record is False
    assert OPENAI.parse_args([]).port == 8765


def test_an_emulator_with_its_own_fault_switches_parses_them() -> None:
    options = GEMINI.options(GEMINI.parse_args(["--faults", "go_away_after_events:3"]))
    assert isinstance(options["faults"], GeminiFaults) and options["faults"].go_away_after_events == 3


def test_an_address_in_use_exits_with_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        def build(args: argparse.Namespace, options: CommonOptions) -> OpenAIRealtimeEmulator:
            return OpenAIRealtimeEmulator(**options)

        command = EmulatorCommand(
            name="Demo emulator",
            module="demo",
            description="",
            default_port=port,
            build=build,
            endpoint=lambda emulator: emulator.ws_url,
        )
        assert command.main([]) == 1
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
