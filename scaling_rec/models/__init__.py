"""scaling_rec.models."""
