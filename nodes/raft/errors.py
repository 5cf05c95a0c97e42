"""Errors the core raises to its caller. Each says what happened and what to do."""

from __future__ import annotations


class RaftError(Exception):
    """Base class of the core's errors."""


class NotLeader(RaftError):
    """A proposal or read reached a node that is not the leader."""

    def __init__(self, node_id: str, leader_id: str | None) -> None:
        self.node_id = node_id
        self.leader_id = leader_id
        hint = f"the leader is {leader_id}" if leader_id else "no leader is known yet; retry"
        super().__init__(f"node {node_id} is not the leader: {hint}")


class TransferInProgress(RaftError):
    """Leadership is being handed over: proposals are refused (never lost) until it ends."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(
            f"leadership is being transferred to {target}; retry against the new leader"
        )


class ConfigChangeInProgress(RaftError):
    """Thesis 4.1: one membership change at a time."""

    def __init__(self, pending_index: int) -> None:
        self.pending_index = pending_index
        super().__init__(
            f"a membership change (log index {pending_index}) is not committed yet; "
            "retry once it is"
        )


class InvalidConfigChange(RaftError):
    """The requested membership change makes no sense for the current configuration."""


class CompactedError(RaftError):
    """An index below the snapshot was asked for: that part of the log is gone."""

    def __init__(self, index: int, offset_index: int) -> None:
        self.index = index
        self.offset_index = offset_index
        super().__init__(f"log index {index} is compacted (snapshot covers up to {offset_index})")
