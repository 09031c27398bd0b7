"""The numpy backend: its array ops."""
