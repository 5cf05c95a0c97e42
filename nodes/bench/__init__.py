"""Benchmarks, run as ``python -m nodes.bench <subcommand>`` (see ``__main__``)."""


class BenchError(RuntimeError):
    """A benchmark's cluster did not do what its workload needed in time (the message says what)."""
