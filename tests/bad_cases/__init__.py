"""Bad-input cases by area (see base.py)."""
