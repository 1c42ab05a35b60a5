"""measure pillar."""
