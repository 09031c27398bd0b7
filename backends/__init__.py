"""One module per framework implementing `dmon.ops.ArrayOps`.

Installed as `dmon.backends`. Each module imports its framework only when its class is
instantiated, which `dmon.ops` does only once that framework is already imported (or
when the user names the backend explicitly).
"""
