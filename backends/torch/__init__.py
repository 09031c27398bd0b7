"""The torch backend: its array ops, training engine and test hooks."""
