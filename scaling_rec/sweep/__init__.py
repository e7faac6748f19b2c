"""scaling_rec.sweep."""
