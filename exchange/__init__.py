"""The exchange domain and its deterministic application core (see core.py)."""
