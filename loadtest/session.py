"""One simulated user: connect, then talk and listen, turn after turn, until the phase ends.

The scenario is turn-taking, as in a real conversation:

* **speak** — the turn's frames of the recording, one per 20 ms tick (`FrameClock`);
* **listen** — server VAD: the microphone stays open and sends digital silence every tick (the
  provider needs the trailing silence to end the turn, and the relay keeps carrying 50 frames a
  second in); manual turns: push-to-talk, ``audio.commit`` right after the last speech frame and
  no audio until the next turn;
* the next turn starts once the answer has been *played* (its simulated playout has ended), or
  after a timeout if no answer comes (counted as ``no_response``).

First-audio latency is measured from the end of the turn (VAD: just before the last speech frame
is sent, i.e. where the user stops talking; manual: just before the commit is sent) to the first
byte of audio of the first response whose audio arrives after that instant. Audio that arrives
while the user is still talking belongs to an "early" response (a VAD that cut the turn short)
and is counted, not measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from dataclasses import dataclass
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from loadtest.dialects import Dialect, Refused
from loadtest.pacing import FRAME_MS, FrameClock
from loadtest.playout import Playout
from loadtest.tally import Tally

CONNECT_TIMEOUT_S: Final = 15.0
CLOSE_WAIT_S: Final = 5.0
MAX_MESSAGE_BYTES: Final = 4 << 20


@dataclass(frozen=True, slots=True)
class Script:
    """What every session of a phase says: the turns as ready wire messages, and how to behave."""

    turns: tuple[tuple[bytes, ...], ...]
    silence: bytes
    manual: bool
    prebuffer_s: float
    listen_timeout_s: tuple[float, ...]  # per turn: long enough for an echo of it, and then some


class Response:
    __slots__ = ("answer", "id", "playout", "received_ms", "started_at")

    def __init__(self, response_id: str, now: float) -> None:
        self.id = response_id
        self.started_at = now
        self.playout: Playout | None = None
        self.received_ms = 0.0
        self.answer = False


class LoadSession:
    """Implements `dialects.Listener`: the receiver calls in here; the sender reads the flags."""

    def __init__(
        self, index: int, dialect: Dialect, script: Script, tally: Tally, start_at: float, stop_at: float
    ) -> None:
        self.index = index
        self.dialect = dialect
        self.script = script
        self.tally = tally
        self.start_at = start_at
        self.stop_at = stop_at
        self.response: Response | None = None
        self.turn_end: float | None = None  # end of the turn awaiting its answer
        self.answer: Response | None = None
        self.answer_done = False
        self.answer_ends_at = 0.0  # when the simulated playout of the answer finishes
        self.ending = False
        self.closed_early = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        tally = self.tally
        delay = self.start_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ws = await connect(
                    self.dialect.url,
                    compression=None,  # as the relay: deflate costs 2.3x per audio frame
                    ping_interval=None,  # keepalive pings would be load the scenario did not ask for
                    proxy=None,
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=None,
                    close_timeout=CLOSE_WAIT_S,
                    **self.dialect.connect_options(),
                )
        except InvalidStatus as exc:
            self._failed(f"http_{exc.response.status_code}")
            return
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._failed(f"connect_{type(exc).__name__}")
            return
        try:
            await self.dialect.open(ws)
        except Refused as exc:
            self._failed(exc.code)
            await _abort(ws)
            return
        except ConnectionClosed:
            self._failed(f"close_{ws.close_code}")
            return
        except TimeoutError:
            self._failed("start_timeout")
            await _abort(ws)
            return
        tally.counts["sessions_opened"] += 1
        tally.counts["open"] += 1
        receiver = asyncio.create_task(self._receive(ws))
        try:
            await self._converse(ws, receiver)
        except ConnectionClosed:
            pass  # the receiver records the close
        finally:
            tally.counts["open"] -= 1
            await self._end(ws, receiver)

    def _failed(self, code: str) -> None:
        self.tally.counts["sessions_failed"] += 1
        self.tally.errors[code] += 1

    async def _end(self, ws: ClientConnection, receiver: asyncio.Task[None]) -> None:
        self.ending = True
        server_closes = False
        with contextlib.suppress(ConnectionClosed):
            server_closes = await self.dialect.end(ws)
        if server_closes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receiver), CLOSE_WAIT_S)
        await _abort(ws)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        code = ws.close_code
        if code == 1000:
            self.tally.counts["sessions_closed_ok"] += 1
        elif not self.closed_early:  # None: no close frame came back before the abort
            self.tally.closes[f"{code}_at_end"] += 1
            self.tally.errors[f"unclean_end_{code}"] += 1

    # -- sending --------------------------------------------------------------------------------

    async def _converse(self, ws: ClientConnection, receiver: asyncio.Task[None]) -> None:
        script, tally = self.script, self.tally
        send_text = self.dialect.send_as_text
        clock = FrameClock(time.monotonic())
        turn_index = self.index % len(script.turns)
        while not receiver.done():
            frames = script.turns[turn_index]
            self.turn_end = None
            self.answer = None
            self.answer_done = False
            position = 0
            last = len(frames) - 1
            while position <= last:  # speak
                advance, late = await clock.wait()
                now = time.monotonic()
                if now >= self.stop_at or receiver.done():
                    return
                position += advance - 1  # frames whose slot passed during a stall are lost, not burst
                position = min(position, last)
                if tally.in_window(now):
                    tally.lateness_ms.add(late * 1000)
                    tally.counts["frames_sent"] += 1
                    tally.counts["frames_skipped"] += advance - 1
                if position == last and not script.manual:
                    self.turn_end = time.monotonic()
                await ws.send(frames[position], text=send_text)
                position += 1
            if script.manual:
                self.turn_end = time.monotonic()
                await self.dialect.commit(ws)
            turn_end = self.turn_end
            assert turn_end is not None
            if tally.in_window(turn_end):
                tally.counts["turns"] += 1
            deadline = turn_end + script.listen_timeout_s[turn_index]
            while not (self.answer_done and time.monotonic() >= self.answer_ends_at):  # listen
                advance, late = await clock.wait()
                now = time.monotonic()
                if now >= self.stop_at or receiver.done():
                    return
                if now >= deadline:
                    if tally.in_window(turn_end):
                        tally.counts["no_response"] += 1
                    break
                if not script.manual:
                    if tally.in_window(now):
                        tally.lateness_ms.add(late * 1000)
                        tally.counts["frames_sent"] += 1
                        tally.counts["frames_skipped"] += advance - 1
                    await ws.send(script.silence, text=send_text)
            turn_index = (turn_index + 1) % len(script.turns)

    # -- receiving ------------------------------------------------------------------------------

    async def _receive(self, ws: ClientConnection) -> None:
        feed = self.dialect.feed
        monotonic = time.monotonic
        try:
            async for message in ws:
                feed(message, self, monotonic())
        except ConnectionClosed:
            pass
        except Exception as exc:  # a message the harness could not read: its bug, shown and counted
            self.tally.errors[f"client_bug_{type(exc).__name__}"] += 1
            traceback.print_exc()
            self.ending = True  # not the server's close: do not count one
            await _abort(ws)
        if not self.ending:
            self.closed_early = True
            self.tally.closes[str(ws.close_code)] += 1
            self.tally.errors[f"unexpected_close_{ws.close_code}"] += 1

    def on_response_started(self, response_id: str, now: float) -> None:
        self.response = Response(response_id, now)
        if self.tally.in_window(now):
            self.tally.counts["responses"] += 1

    def on_audio(self, ms: float, now: float) -> None:
        response = self.response
        if response is None:  # audio outside a response: the protocol says it cannot happen
            self.tally.errors["audio_outside_response"] += 1
            return
        response.received_ms += ms
        if self.tally.in_window(now):
            self.tally.counts["audio_messages_received"] += 1
        playout = response.playout
        if playout is not None:
            gap = playout.feed(now, ms / 1000)
            if self.tally.in_window(now):
                self.tally.gap_ms.add(gap * 1000)
            return
        response.playout = Playout(now, ms / 1000, self.script.prebuffer_s)
        turn_end = self.turn_end
        if turn_end is not None and now > turn_end and self.answer is None:
            response.answer = True
            self.answer = response
            if self.tally.in_window(turn_end):
                self.tally.first_audio_ms.append((now - turn_end) * 1000)
        elif self.tally.in_window(now):
            self.tally.counts["early_responses"] += 1

    def on_response_done(self, response_id: str, status: str, reported_ms: float, now: float) -> None:
        response = self.response
        if response is None or response.id != response_id:
            response = Response(response_id, now)  # no audio seen for it
        self.response = None
        tally = self.tally
        counted = tally.in_window(now)
        if counted:
            key = {"completed": "responses_completed", "cancelled": "responses_cancelled"}.get(status)
            tally.counts[key or "responses_other"] += 1
            playout = response.playout
            if playout is not None:
                tally.counts["underruns"] += playout.underruns
                tally.underrun_ms += playout.underrun_s * 1000
                tally.behind_ms.add(playout.behind_max_s * 1000)
            if status == "completed":
                tally.counts["audio_out_reported_ms"] += round(reported_ms)
                tally.counts["audio_received_ms"] += round(response.received_ms)
                # A completed response must deliver all it reports, give or take one frame of rounding.
                if response.received_ms < reported_ms - FRAME_MS:
                    tally.counts["lost_responses"] += 1
                    tally.lost_ms += reported_ms - response.received_ms
        turn_end = self.turn_end
        if self.answer is None and turn_end is not None and response.started_at > turn_end and response.playout is None:
            self.answer = response  # an answer without audio: nothing to play, move on
        if response is self.answer:
            self.answer_done = True
            self.answer_ends_at = response.playout.ends_at if response.playout is not None else now

    def on_error(self, code: str, fatal: bool) -> None:
        self.tally.errors[f"{code} (fatal)" if fatal else code] += 1


async def _abort(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_WAIT_S):
            await ws.close()
