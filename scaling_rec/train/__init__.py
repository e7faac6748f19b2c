"""scaling_rec.train."""
