"""A user's custom layer, importable by the parity subprocesses (keep custom layers in a
module, not in `__main__`, so that every backend's process can load the model)."""

import keras


@keras.saving.register_keras_serializable(package="example")
class Drift(keras.layers.Layer):
    """A deliberate bug: under the torch backend it adds a small offset."""

    def call(self, x):
        if keras.backend.backend() == "torch":
            return x + 1e-3
        return x
