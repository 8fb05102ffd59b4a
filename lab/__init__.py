"""netready lab."""
