"""scaling_rec.data."""
