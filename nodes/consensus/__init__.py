"""The ``Consensus`` API: Raft or simple-majority agreement over a key-value state.

Modules, one job each:

- ``api``: ``Consensus``, the facade (lifecycle, proposals, reads, cluster,
  events, bring-your-own transport); ``patterns``: CAS, counters, batches,
  locks, optimistic updates.
- ``raft_driver``: drives the sans-I/O Raft core (``nodes.raft``) from asyncio
  (the Ready contract, applying, events, membership sync); ``raft_service``:
  what a node does for the others as leader (forwarded proposals, ReadIndex,
  membership); ``raft_client``: this node's requests, asked of the leader
  with retries and client sessions.
- ``majority``: the sans-I/O ``simple_majority`` core; ``majority_driver``
  drives it.
- ``driver``: the tick task, liveness pings and what both drivers share.
- ``peer_links``: how nodes reach each other: ``InProcessNetwork``, ZeroMQ, bring-your-own.
- ``checks``: argument checks (``InvalidArgument``: seconds not
  milliseconds, values that can be replicated, keys, node ids).
- ``wire``: packets and their bytes; ``events``: event names, triggers and
  dispatch; ``liveness``: reachability and partitions; ``directory``: the
  replicated address book; ``types``: result values.
"""

from .api import Consensus
from .events import EVENTS
from .majority import Proposal, quorum_required
from .majority_driver import default_vote_policy
from .peer_links import InProcessNetwork
from .types import (
    ConsensusError,
    InvalidArgument,
    LockResult,
    NodeInfo,
    NotStarted,
    ProposalResult,
    ValueInfo,
    Votes,
)

__all__ = [
    "EVENTS",
    "Consensus",
    "ConsensusError",
    "InProcessNetwork",
    "InvalidArgument",
    "LockResult",
    "NodeInfo",
    "NotStarted",
    "Proposal",
    "ProposalResult",
    "ValueInfo",
    "Votes",
    "default_vote_policy",
    "quorum_required",
]
