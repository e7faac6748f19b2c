"""Kernels: jagged causal HSTU attention (dispatch, XLA path, Pallas kernels) and its reference."""

from scaling_rec.kernels.dispatch import hstu_attention, resolve_impl
from scaling_rec.kernels.hstu_reference import hstu_attention_reference
from scaling_rec.kernels.hstu_xla import hstu_attention_xla

__all__ = ["hstu_attention", "hstu_attention_reference", "hstu_attention_xla", "resolve_impl"]
