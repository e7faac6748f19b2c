"""scaling_rec.analysis."""
