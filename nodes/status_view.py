"""The cluster status table (``arena status``, ``arena up``), fitted to the terminal.

Rich shrinks a table that is too wide by cutting its widest cells ("tcp://12...",
"pre-candi..."): exactly the address and the role one reads the table for. So
the table comes in layouts from roomy to compact, and the first one whose
natural width fits the console is drawn:

1. roomy: boxed, full addresses, "(partitioned)" after the role;
2. compact: no box, addresses without their common scheme ("tcp://", named in
   the caption), a partitioned node's role marked "*" (caption explains),
   short headers.

If even the compact one does not fit, its address and role cells wrap instead
of being cut, so no address or role is ever shortened.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

ROLE_STYLE = {"leader": "bold green", "follower": "cyan", "candidate": "yellow",
              "pre-candidate": "yellow", "learner": "magenta"}


@dataclass(frozen=True, slots=True)
class _Layout:
    compact: bool


LAYOUTS = (_Layout(compact=False), _Layout(compact=True))


def _common_scheme(rows: list[dict]) -> str:
    schemes = {str(r.get("address", "")).partition("://")[0] + "://" for r in rows}
    if len(schemes) == 1 and all("://" in str(r.get("address", "")) for r in rows):
        return schemes.pop()
    return ""


def _build(rows: list[dict], title: str, layout: _Layout, wrap: bool) -> Table:
    compact = layout.compact
    scheme = _common_scheme(rows) if compact else ""
    partitioned = [r["id"] for r in rows if r.get("reachable") and r.get("blocked")]
    notes = []
    if scheme:
        notes.append(f"addresses are {scheme}host:port")
    if compact and partitioned:
        notes.append("* partitioned")
    table = Table(title=title, caption="; ".join(notes) or None,
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
                  show_edge=not compact, pad_edge=not compact, padding=(0, 1),
                  collapse_padding=compact)
    keep_whole = {"no_wrap": not wrap, "overflow": "fold"}
    table.add_column("node", **keep_whole)  # type: ignore[arg-type]
    table.add_column("address", **keep_whole)  # type: ignore[arg-type]
    table.add_column("role", **keep_whole)  # type: ignore[arg-type]
    for name in ("term", "leader", "commit", "applied"):
        table.add_column(name, no_wrap=True, justify="right" if name != "leader" else "left")
    table.add_column("up" if compact else "reachable", no_wrap=True)
    for r in rows:
        address = str(r.get("address", ""))
        if scheme and address.startswith(scheme):
            address = address[len(scheme):]
        if not r.get("reachable"):
            table.add_row(r["id"], address, "[red]down[/red]", "-", "-", "-", "-", "no")
            continue
        role = str(r.get("role"))
        styled = f"[{ROLE_STYLE.get(role, 'white')}]{role}[/]"
        if r.get("blocked"):
            styled += "*" if compact else " (partitioned)"
        table.add_row(r["id"], address, styled, str(r.get("term")), str(r.get("leader") or "-"),
                      str(r.get("commit")), str(r.get("applied")), "yes")
    return table


def status_table(rows: list[dict], title: str = "cluster", width: int | None = None) -> Table:
    """The status table in the roomiest layout that fits ``width`` columns
    (default: the terminal's)."""
    width = width if width is not None else Console().width
    measure = Console(width=10_000)
    for layout in LAYOUTS:
        table = _build(rows, title, layout, wrap=False)
        if measure.measure(table).maximum <= width:
            return table
    return _build(rows, title, LAYOUTS[-1], wrap=True)


def render_status(rows: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    console.print(status_table(rows, width=console.width))
