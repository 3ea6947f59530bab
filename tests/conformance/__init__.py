"""Protocol v1 conformance tests: a client written from /work/shared/protocol-v1.md alone."""
