"""netready reports."""
