"""The producer's local spill file: an append-only journal of encoded usage events, replayed in order.

Record framing: a 4-byte big-endian payload length, a 4-byte CRC-32 of the payload, then the payload
(the msgpack bytes of ``relay.metering.codec``). The CRC lets a restart tell a record torn by a
crash (incomplete tail: cut off, logged) or damaged on disk (moved aside to ``<path>.corrupt-<ts>``,
logged) from good ones.

Durability policy:

- ``append`` is one ``os.write`` on an unbuffered descriptor: once it returns, the record is in the
  kernel's page cache and survives a crash of *this process*.
- ``sync`` (an ``fsync`` on a worker thread, so the event loop never waits for the disk) is called by
  the producer every ``RELAY_METER_JOURNAL_FSYNC_MS`` while the journal holds records, and at
  shutdown: a power loss or kernel crash can lose at most that window of spilled events.

The file is locked (``flock``) for as long as a producer holds it, so two processes can never
interleave records in one journal; give each relay process its own path.

Replay is at least once: a crash during replay sends some records again on restart. The consumer's
``ON CONFLICT (event_id) DO NOTHING`` turns those into no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass

LOG = logging.getLogger("relay.metering.journal")

HEADER = struct.Struct(">II")
# A record larger than this is damage, not an event (events are a few hundred bytes; metadata is
# bounded by the 1 MiB message limit).
MAX_RECORD = 4 << 20
READ_CHUNK = 256 << 10


class JournalError(OSError):
    """The journal cannot be opened (locked by another process, unwritable path)."""


@dataclass(frozen=True, slots=True)
class Record:
    payload: bytes
    end: int  # file offset just past this record: what `advance` takes once it is sent


class Journal:
    def __init__(self, path: str, fd: int, size: int, records: int) -> None:
        self.path = path
        self._fd = fd
        self._size = size  # end of the last complete record
        self._read = 0  # start of the first record not yet replayed
        self.pending = records  # records between _read and _size
        self._dirty = False
        self._syncing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"Journal({self.path!r}, pending={self.pending})"

    @classmethod
    def open(cls, path: str) -> Journal:
        """Open (creating) and lock the journal, check what a previous process left in it."""
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the usage journal {path!r}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalError(
                f"the usage journal {path!r} is locked by another process; give each relay its own "
                "RELAY_METER_JOURNAL_PATH"
            ) from None
        size, records = _recover(fd, path)
        if records:
            LOG.warning("usage journal %s holds %d events from a previous run; they will be replayed", path, records)
        return cls(path, fd, size, records)

    # -- writing (event loop thread) ------------------------------------------------------------

    def append(self, payload: bytes) -> None:
        """Write one record. Raises OSError (disk full, I/O error); the caller decides what that means."""
        record = HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        written = os.write(self._fd, record)
        if written != len(record):
            # A short write to a regular file means the disk is full: cut the torn record off again.
            os.ftruncate(self._fd, self._size)
            raise OSError(f"short write to the usage journal ({written} of {len(record)} bytes)")
        self._size += written
        self.pending += 1
        self._dirty = True

    async def sync(self) -> None:
        """fsync on a worker thread if anything was appended since the last sync."""
        if not self._dirty or self._fd < 0:
            return
        self._dirty = False
        running = asyncio.get_running_loop().run_in_executor(None, os.fsync, self._fd)
        self._syncing = running
        # Shielded: a cancelled caller must not let `close` shut the descriptor under a running fsync.
        await asyncio.shield(running)

    # -- replay -------------------------------------------------------------------------------------

    def read(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` records from the replay position, oldest first; not consumed until `advance`."""
        out: list[Record] = []
        offset = self._read
        while len(out) < max_records and offset < self._size:
            head = os.pread(self._fd, HEADER.size, offset)
            length, _crc = HEADER.unpack(head)
            payload = os.pread(self._fd, length, offset + HEADER.size)
            offset += HEADER.size + length
            out.append(Record(payload, offset))
        return out

    def advance(self, records: list[Record]) -> None:
        """Mark ``records`` (a prefix of what `read` returned) as replayed."""
        if records:
            self._read = records[-1].end
            self.pending -= len(records)

    def caught_up(self) -> bool:
        return self._read >= self._size

    def reset(self) -> None:
        """Empty the file once everything in it has been replayed."""
        if not self.caught_up():
            raise RuntimeError("journal reset with records still to replay")
        os.ftruncate(self._fd, 0)
        self._size = self._read = 0
        self.pending = 0
        self._dirty = True  # the truncation itself should reach the disk

    async def close(self) -> None:
        if self._fd < 0:
            return
        if self._syncing is not None:
            with contextlib.suppress(OSError):
                await self._syncing
        self._dirty = True
        await self.sync()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1


def _recover(fd: int, path: str) -> tuple[int, int]:
    """Scan the file: (end of the last good record, number of good records). Cuts off a torn tail and
    moves anything after a damaged record aside, so replay only ever sees whole, checked records."""
    total = os.fstat(fd).st_size
    offset = records = 0
    while offset < total:
        head = os.pread(fd, HEADER.size, offset)
        if len(head) < HEADER.size:
            break
        length, crc = HEADER.unpack(head)
        if length > MAX_RECORD:
            _move_aside(fd, path, offset, total, "implausible record length")
            return offset, records
        payload = os.pread(fd, length, offset + HEADER.size)
        if len(payload) < length:
            break
        if zlib.crc32(payload) != crc:
            _move_aside(fd, path, offset, total, "checksum mismatch")
            return offset, records
        offset += HEADER.size + length
        records += 1
    if offset < total:
        LOG.warning("usage journal %s: cut off %d bytes of a record torn by a crash", path, total - offset)
        os.ftruncate(fd, offset)
    return offset, records


def _move_aside(fd: int, path: str, offset: int, total: int, why: str) -> None:
    aside = f"{path}.corrupt-{int(time.time())}"
    with open(aside, "wb") as out:
        out.write(os.pread(fd, total - offset, offset))
    os.ftruncate(fd, offset)
    LOG.error(
        "usage journal %s: %s at byte %d; the %d bytes from there were moved to %s for inspection",
        path,
        why,
        offset,
        total - offset,
        aside,
    )
