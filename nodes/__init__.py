"""Arena's replicated nodes: the Raft core, storage, transport, state machines, server.

``from nodes import Consensus`` (and ``InProcessNetwork``, ``ProposalResult``...)
is resolved lazily, so ``import nodes`` stays light for the processes that only
need a part of the package.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Consensus", "ConsensusError", "InProcessNetwork", "InvalidArgument", "LockResult", "NodeInfo",
    "NotStarted", "Proposal", "ProposalResult", "ValueInfo", "Votes",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import consensus

        return getattr(consensus, name)
    raise AttributeError(f"module 'nodes' has no attribute {name!r}")
