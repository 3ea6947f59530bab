"""relay/transports."""
