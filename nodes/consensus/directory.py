"""The replicated address book ("members" machine): node id -> transport address.

``add_node(id, address)`` on any node first commits the address here, then
asks the leader for the membership change. So every node (and a node elected
later) knows how to reach every member, and a snapshot carries the book to a
node that catches up from one. Deterministic like every state machine.

Metadata given to ``add_node`` (a small map, e.g. ``{"region": "eu-west"}``)
is kept beside the address, so every member's ``get_nodes()`` shows it.

Commands: ``set {id, address?, metadata?}`` (at least one of the two) and
``forget {id}``; query ``all``. Events: ``{"type": "member:address", "id",
"address", "metadata"?}`` (``metadata`` present when set; address None and no
metadata: forgotten). Snapshot: ``[[id, address], ...]``, or ``[id, address,
metadata]`` for a node with metadata (``address`` may then be None).
"""

from __future__ import annotations

from typing import Any

from nodes.statemachine import ApplyContext, error_result

MAX_ADDRESS_CHARS = 512


class Directory:
    name = "members"

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.metadata: dict[str, dict[str, Any]] = {}

    def apply(self, command: dict, ctx: ApplyContext) -> tuple[object, list[dict]]:
        op, node_id = command.get("op"), command.get("id")
        if not isinstance(node_id, str) or not node_id:
            return error_result("bad_command", f"id must be a non-empty str, got {node_id!r:.80}"), []
        if op == "set":
            address = command.get("address")
            metadata = command.get("metadata")
            if address is None and metadata is None:
                return error_result("bad_command", "set needs an address or metadata"), []
            if address is not None and (not isinstance(address, str)
                                        or not 0 < len(address) <= MAX_ADDRESS_CHARS):
                return error_result("bad_command", f"address must be a non-empty str, got "
                                                   f"{address!r:.80}"), []
            if metadata is not None and not isinstance(metadata, dict):
                return error_result("bad_command", f"metadata must be a map, got "
                                                   f"{type(metadata).__name__}"), []
            if address is not None:
                self.addresses[node_id] = address
            event: dict[str, Any] = {"type": "member:address", "id": node_id,
                                     "address": self.addresses.get(node_id)}
            if metadata is not None:
                self.metadata[node_id] = metadata
                event["metadata"] = metadata
            return {"ok": True}, [event]
        if op == "forget":
            known = node_id in self.addresses or node_id in self.metadata
            self.addresses.pop(node_id, None)
            self.metadata.pop(node_id, None)
            if not known:
                return {"ok": True, "forgotten": False}, []
            return {"ok": True}, [{"type": "member:address", "id": node_id, "address": None}]
        return error_result("unknown_op", f"unknown members command {op!r:.80}"), []

    def query(self, query: dict) -> object:
        return {"ok": True, "addresses": dict(self.addresses)}

    def snapshot(self) -> object:
        out: list[list[Any]] = []
        for node_id in sorted(self.addresses.keys() | self.metadata.keys()):
            row: list[Any] = [node_id, self.addresses.get(node_id)]
            if node_id in self.metadata:
                row.append(self.metadata[node_id])
            out.append(row)
        return out

    def restore(self, data: object) -> None:
        if not isinstance(data, list):
            raise ValueError(f"malformed members snapshot: {type(data).__name__}")
        self.addresses, self.metadata = {}, {}
        for row in data:
            if not isinstance(row, list) or len(row) not in (2, 3):
                raise ValueError(f"malformed members snapshot row: {row!r:.80}")
            node_id = str(row[0])
            if row[1] is not None:
                self.addresses[node_id] = str(row[1])
            if len(row) == 3 and isinstance(row[2], dict):
                self.metadata[node_id] = row[2]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.addresses)

    def metadata_dict(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.metadata.items()}
