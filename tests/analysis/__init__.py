"""Tests of scaling_rec.analysis."""
