"""Numerical constants shared by the core and the backends."""

EPS = 1e-15
"""Added to `sqrt(degree)` when normalising the pooled adjacency, as PyTorch Geometric."""

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
"""SELU constants (Klambauer et al., 2017), used where a framework has no `selu`."""
