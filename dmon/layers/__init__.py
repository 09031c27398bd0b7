"""Framework layers over :func:`dmon.pool`. Import the submodule of your framework:
``dmon.layers.torch``. Importing this package imports no framework."""
