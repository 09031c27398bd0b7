"""The jax backend: its array ops, training engine and test hooks."""
