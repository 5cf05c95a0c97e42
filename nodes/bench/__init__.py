"""Benchmarks, run as ``python -m nodes.bench <subcommand>`` (see ``__main__``)."""
