"""Framework layers over `dmon.pool`. Import the submodule of your framework:
`dmon.layers.torch`. Importing this package imports no framework."""
