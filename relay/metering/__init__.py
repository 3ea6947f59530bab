"""relay/metering."""
