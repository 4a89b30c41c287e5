"""kvrepl's benchmark harness: ``python benchmarks/run.py [--quick] [--only NAME]``.

Each benchmark is a module here with a ``TITLE`` and a ``run(options) -> str`` that returns a
markdown section; ``run.py`` lists them in ``BENCHMARKS`` and selects them with ``--only``.
"""
