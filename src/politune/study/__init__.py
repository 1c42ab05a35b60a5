"""study pillar."""
