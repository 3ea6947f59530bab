"""Realtime Relay: bidirectional voice/chat sessions between clients and AI providers."""

__version__ = "0.1.0"
