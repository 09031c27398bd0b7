"""The tensorflow backend: its array ops, training engine and test hooks."""
