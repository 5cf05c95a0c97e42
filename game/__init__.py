"""Arena's game rules as a deterministic state machine (DESIGN.md, "Layers" item 3).

``game.rules.apply(state, command, ctx)`` is the whole contract with the node
layer; ``game.view`` answers read-only questions for renderers and bots;
``game.machine.GameMachine`` wraps them in the node layer's StateMachine shape;
``game.local.LocalTable`` runs them in one process under a scripted clock.
"""

from game.config import GameConfig
from game.rules import Context, apply, new_state

__all__ = ["Context", "GameConfig", "apply", "new_state"]
