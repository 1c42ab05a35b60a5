"""serve pillar."""
