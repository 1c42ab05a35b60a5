"""report pillar."""
