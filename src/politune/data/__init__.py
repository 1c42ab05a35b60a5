"""data pillar."""
