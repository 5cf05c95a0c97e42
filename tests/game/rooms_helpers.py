"""A rooms machine driven as the log would drive it, under a scripted leader clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from game import rooms, seats
from game.config import GameConfig
from game.rooms_machine import RoomsMachine

SECRET = "test-secret-not-for-clients"


@dataclass(frozen=True)
class Entry:
    """What ``nodes.statemachine.ApplyContext`` gives a machine."""

    index: int
    timestamp_ms: int
    client_id: str


class RoomsLog:
    """A ``RoomsMachine`` plus the log index and leader clock; checks invariants each step."""

    def __init__(
        self, config: GameConfig | None = None, start_ms: int = 1_000_000, **options: Any
    ) -> None:
        options.setdefault("secret", SECRET)
        options.setdefault("seed", 11)
        self.machine = RoomsMachine(config, **options)
        self.index = 0
        self.clock_ms = start_ms
        self.events: list[dict[str, Any]] = []
        self.published: list[Any] = []  # every result and event, as a server would publish them

    @property
    def state(self) -> dict[str, Any]:
        return self.machine.state

    def submit(self, client_id: str, command: Any) -> dict[str, Any]:
        self.index += 1
        result, self.events = self.machine.apply(
            command, Entry(self.index, self.clock_ms, client_id)
        )
        rooms.check_rooms_invariants(self.state)
        self.published.append(self.events)
        return result  # type: ignore[return-value]

    def do(self, client_id: str, kind: str, /, **fields: Any) -> dict[str, Any]:
        return self.submit(client_id, {"type": kind, **fields})

    def wait(self, ms: int) -> None:
        self.clock_ms += ms

    def timers(self) -> dict[str, Any] | None:
        """What the leader does on its timer: propose (here: apply) the due command."""
        command = self.machine.due_command(self.clock_ms)
        return None if command is None else self.submit("@rooms/n1/1", command)

    def table(self, room_id: str) -> dict[str, Any]:
        return self.state["rooms"][room_id]["table"]

    def room_bytes(self, room_id: str) -> bytes:
        return msgpack.packb(self.state["rooms"][room_id], use_bin_type=True)

    def token(self, room_id: str, name: str) -> str:
        """The seat's current token, as its client kept it from the last join/reclaim."""
        epoch = self.state["rooms"][room_id]["seats"][name]["epoch"]
        return seats.token_for(SECRET, room_id, name, epoch)

    def types(self) -> list[str]:
        """The last command's event types, leaving out the ``sync`` records."""
        return [e["type"] for e in self.events if e["type"] != "sync"]
