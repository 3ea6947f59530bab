"""Pieces shared by the local provider emulators (OpenAI, Gemini, Cartesia, ElevenLabs).

* `synth` — a deterministic speech-like synthesizer (text → int16 PCM, no randomness);
* `vad` — an energy voice-activity detector over 20 ms windows;
* `turns` — an input audio buffer that cuts turns with the VAD;
* `faults` — fault switches for tests (delays, drops, malformed frames, refused handshakes);
* `pacing` — releases media at a multiple of real time against the monotonic clock;
* `server` — a small `websockets` server base with fault-aware, recording connections;
* `tls` — a throwaway self-signed loopback certificate for emulators that serve ``wss``;
* `cli` — the command line every emulator shares (``python -m providers.<name>.emulator``).

Emulators are for tests, load tests and the keyless default run; the relay's hot path never imports them.
"""
