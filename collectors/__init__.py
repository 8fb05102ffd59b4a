"""netready collectors."""
