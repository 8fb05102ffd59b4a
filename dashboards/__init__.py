"""netready dashboards."""
