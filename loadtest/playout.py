"""What a client playing the answer in real time would hear: a simulated playout buffer.

Audio of one response is scheduled for playback as it arrives: playback starts ``prebuffer``
after the first byte (a jitter buffer), and every later chunk is appended to the end of what is
already scheduled. If a chunk arrives after the scheduled audio has run out, the listener heard a
gap: an *underrun* of ``arrival - end``; playback resumes at once with that chunk (no re-buffering,
the kindest choice for the relay). Underruns are counted only inside a response: the silence
between responses is the conversation, not a glitch.

``behind`` is how late each chunk is against an ideal real-time clock started by the first chunk;
its maximum over a response is the smallest jitter buffer that would have played it without a gap.
"""

from __future__ import annotations


class Playout:
    __slots__ = ("behind_max_s", "ends_at", "first_at", "last_at", "media_s", "prebuffer_s", "underrun_s", "underruns")

    def __init__(self, now: float, duration_s: float, prebuffer_s: float) -> None:
        self.prebuffer_s = prebuffer_s
        self.first_at = now
        self.last_at = now
        self.media_s = duration_s
        self.ends_at = now + prebuffer_s + duration_s
        self.underruns = 0
        self.underrun_s = 0.0
        self.behind_max_s = 0.0

    def feed(self, now: float, duration_s: float) -> float:
        """One more chunk arrived; returns the gap since the previous chunk (seconds)."""
        behind = now - (self.first_at + self.media_s)
        if behind > self.behind_max_s:
            self.behind_max_s = behind
        if now > self.ends_at:
            self.underruns += 1
            self.underrun_s += now - self.ends_at
            self.ends_at = now + duration_s
        else:
            self.ends_at += duration_s
        self.media_s += duration_s
        gap = now - self.last_at
        self.last_at = now
        return gap
