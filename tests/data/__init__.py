"""Tests of scaling_rec.data."""
