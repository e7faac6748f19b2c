"""scaling_rec.parallel."""
