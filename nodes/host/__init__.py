"""The node host (issue 14): one process runs replicas of many Raft groups.

- ``driver``: the one driver of the Ready contract, used by every loop.
- ``host``: the sans-I/O ``Host`` (groups, one sync per turn, coalesced batches,
  quiescence, node failure).
- ``storage``: the two-phase storage shape (``stage`` per group, one ``sync``),
  and ``MemoryWal``.
- ``cluster``: hosts on a hand-driven network, for golden transcripts.
- ``shell``: the ZeroMQ shell, and the process ``arena bench groups`` runs.
"""
