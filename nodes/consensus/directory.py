"""The replicated address book ("members" machine): node id -> transport address.

``add_node(id, address)`` on any node first commits the address here, then
asks the leader for the membership change. So every node (and a node elected
later) knows how to reach every member, and a snapshot carries the book to a
node that catches up from one. Deterministic like every state machine.

Commands: ``set {id, address}`` and ``forget {id}``; query ``all``.
Events: ``{"type": "member:address", "id", "address"}`` (address None: forgotten).
"""

from __future__ import annotations

from typing import Any

from nodes.statemachine import ApplyContext, error_result

MAX_ADDRESS_CHARS = 512


class Directory:
    name = "members"

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}

    def apply(self, command: dict, ctx: ApplyContext) -> tuple[object, list[dict]]:
        op, node_id = command.get("op"), command.get("id")
        if not isinstance(node_id, str) or not node_id:
            return error_result("bad_command", f"id must be a non-empty str, got {node_id!r:.80}"), []
        if op == "set":
            address = command.get("address")
            if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_CHARS:
                return error_result("bad_command", f"address must be a non-empty str, got "
                                                   f"{address!r:.80}"), []
            self.addresses[node_id] = address
        elif op == "forget":
            if self.addresses.pop(node_id, None) is None:
                return {"ok": True, "forgotten": False}, []
            address = None
        else:
            return error_result("unknown_op", f"unknown members command {op!r:.80}"), []
        return {"ok": True}, [{"type": "member:address", "id": node_id, "address": address}]

    def query(self, query: dict) -> object:
        return {"ok": True, "addresses": dict(self.addresses)}

    def snapshot(self) -> object:
        return [[k, v] for k, v in sorted(self.addresses.items())]

    def restore(self, data: object) -> None:
        if not isinstance(data, list):
            raise ValueError(f"malformed members snapshot: {type(data).__name__}")
        self.addresses = {str(k): str(v) for k, v in data}

    def as_dict(self) -> dict[str, Any]:
        return dict(self.addresses)
