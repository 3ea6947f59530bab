"""audiocodecs."""
