"""tune pillar."""
