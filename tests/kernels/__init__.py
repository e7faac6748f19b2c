"""Tests of scaling_rec.kernels."""
