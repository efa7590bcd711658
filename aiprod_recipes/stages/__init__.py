"""One module per DVC stage, each exposing ``run(spec, paths) -> report``.

Modules import their heavy dependencies inside functions, so listing or validating stays fast.
"""
