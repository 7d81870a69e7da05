"""guanxi core engine (imports filled in as modules land)."""
