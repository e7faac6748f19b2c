"""scaling_rec.kernels."""
