"""The spill journal: append, replay in order, survive a torn tail and a damaged record, one owner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relay.metering.journal import HEADER, Journal, JournalError


async def test_replays_in_order_and_empties_once_caught_up(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "j"))
    for i in range(10):
        journal.append(b"record-%d" % i)
    first = journal.read(4)
    assert [r.payload for r in first] == [b"record-%d" % i for i in range(4)]
    journal.advance(first[:2])  # only what was sent is consumed
    assert journal.pending == 8
    rest = journal.read(100)
    assert [r.payload for r in rest] == [b"record-%d" % i for i in range(2, 10)]
    with pytest.raises(RuntimeError):
        journal.reset()  # records still to replay
    journal.advance(rest)
    assert journal.caught_up() and journal.pending == 0
    journal.reset()
    assert _size(tmp_path / "j") == 0
    journal.append(b"after")
    assert [r.payload for r in journal.read(5)] == [b"after"]
    await journal.close()


async def test_a_restart_finds_what_the_last_run_left(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal.open(path)
    for i in range(3):
        journal.append(b"r%d" % i)
    journal.advance(journal.read(1))  # replayed, but the file was not emptied before the "crash"
    await journal.close()
    again = Journal.open(path)
    # At least once: the replayed record comes back too; the ledger dedupes it by event id.
    assert [r.payload for r in again.read(10)] == [b"r0", b"r1", b"r2"]
    assert again.pending == 3
    await again.close()


async def test_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal.open(path)
    journal.append(b"whole")
    await journal.close()
    _append_raw(path, HEADER.pack(100, 0) + b"only part of it")  # a crash in the middle of a write
    again = Journal.open(path)
    assert [r.payload for r in again.read(10)] == [b"whole"]
    again.append(b"next")
    assert [r.payload for r in again.read(10)] == [b"whole", b"next"]
    await again.close()


async def test_a_damaged_record_and_what_follows_are_moved_aside(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal.open(path)
    for payload in (b"good-1", b"bad", b"good-2"):
        journal.append(payload)
    await journal.close()
    second = HEADER.size + len(b"good-1")
    total = _flip_byte(path, second + HEADER.size)  # damage a payload byte of the second record
    again = Journal.open(path)
    assert [r.payload for r in again.read(10)] == [b"good-1"]
    aside = [p for p in _listing(tmp_path) if p.name.startswith("j.corrupt-")]
    assert len(aside) == 1 and _size(aside[0]) == total - second
    await again.close()


async def test_one_journal_one_process(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal.open(path)
    with pytest.raises(JournalError, match="locked"):
        Journal.open(path)
    await journal.close()
    await Journal.open(path).close()  # free again once closed


async def test_sync_and_close_are_safe_to_repeat(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "j"))
    journal.append(b"x")
    await journal.sync()
    await journal.sync()
    await journal.close()
    await journal.close()
    with pytest.raises(OSError):
        journal.append(b"after close")


# File surgery, done synchronously (the journal's own I/O is what the tests are about).


def _size(path: Path) -> int:
    return os.path.getsize(path)


def _append_raw(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _flip_byte(path: str, offset: int) -> int:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    return len(data)


def _listing(directory: Path) -> list[Path]:
    return list(directory.iterdir())
