"""netready probes."""
