"""The version of dmon, in one place (`dmon.__version__`)."""

__version__ = "0.1.0"
