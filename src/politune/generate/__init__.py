"""generate pillar."""
