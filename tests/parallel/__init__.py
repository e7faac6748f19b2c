"""Tests of scaling_rec.parallel."""
