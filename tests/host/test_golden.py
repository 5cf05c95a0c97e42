"""Golden transcripts of multi-group interactions (etcd-io/raft's testdata style).

Each ``testdata/*.txt`` is a script: ``> command`` lines, each followed by what
it printed (every batch delivered, every change of a group's role, term,
leader or quiescence), and ``#`` comments. The test runs the commands,
regenerates the file and diffs it against the checked-in one. After a
deliberate change of behaviour, rewrite them with
``ARENA_REWRITE_GOLDEN=1 pytest tests/host/test_golden.py`` and read the diff.

Commands::

    cluster n1,n2,n3 [quiesce_ticks=N] [beat_ticks=N] [node_timeout_ticks=N] [beats=quiet]
    create g1 n1,n2,n3 [lead=n1]      a group; ``lead`` campaigns at once
    tick [N]                          N times: tick every host, then stabilize
    tick-until g1 leader|quiesced [limit=N]
                                      tick until group 1 has a leader / is quiescent on
                                      every replica (prints how many ticks it took)
    propose g1 data                   at the group's leader, then stabilize
    deliver | stabilize
    kill n2 | restart n2
    state                             every replica's role, term, leader, quiescence
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from nodes.host.cluster import HostCluster
from nodes.host.host import HostOptions

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def _gid(word: str) -> int:
    assert word.startswith("g"), f"a group is written g<number>, got {word!r}"
    return int(word[1:])


def _kv(words: list[str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words if "=" in w)


class Runner:
    def __init__(self) -> None:
        self.c: HostCluster | None = None

    def run(self, command: str) -> list[str]:
        words = command.split()
        op, args = words[0], words[1:]
        if op == "cluster":
            kv = _kv(args[1:])
            opts = HostOptions(
                quiesce_ticks=int(kv.get("quiesce_ticks", 3)),
                beat_ticks=int(kv.get("beat_ticks", 5)),
                node_timeout_ticks=int(kv.get("node_timeout_ticks", 10)),
            )
            self.c = HostCluster(args[0].split(","), opts, seed=1)
            self.c.quiet_beats = kv.get("beats") == "quiet"
            return []
        c = self.c
        assert c is not None, "start with: cluster n1,n2,n3"
        start = len(c.log)
        if op == "create":
            c.create(_gid(args[0]), args[1].split(","), _kv(args[2:]).get("lead"))
            c.stabilize()
        elif op == "tick":
            for _ in range(int(args[0]) if args else 1):
                c.tick()
                c.stabilize()
        elif op == "tick-until":
            gid, what, limit = _gid(args[0]), args[1], int(_kv(args[2:]).get("limit", 200))
            if what not in ("leader", "quiesced"):
                raise ValueError(f"tick-until g<n> leader|quiesced, got {what!r}")

            def reached() -> bool:
                if what == "leader":
                    return c.leader(gid) is not None
                return c.quiesced(gid) == sorted(n for n, h in c.hosts.items() if gid in h.groups)

            for n in range(1, limit + 1):
                c.tick()
                c.stabilize()
                if reached():
                    detail = f" {c.leader(gid)}" if what == "leader" else ""
                    c.log.append(f"g{gid} {what}{detail} after {n} ticks")
                    break
            else:
                c.log.append(f"g{gid} not {what} after {limit} ticks")
        elif op == "propose":
            c.propose(_gid(args[0]), args[1].encode())
            c.stabilize()
        elif op == "deliver":
            c.deliver()
        elif op == "stabilize":
            c.stabilize()
        elif op == "kill":
            c.kill(args[0])
        elif op == "restart":
            c.restart(args[0])
            c.stabilize()
        elif op == "state":
            for nid, h in sorted(c.hosts.items()):
                for gid, g in sorted(h.groups.items()):
                    r = g.raft
                    c.log.append(
                        f"{nid} g{gid}: {r.role.value} term={r.term} leader={r.leader_id or '-'}"
                        f" commit={r.commit}" + (" quiesced" if g.quiesced else "")
                    )
        else:
            raise ValueError(f"unknown command {op!r} (see this module's docstring)")
        return c.log[start:]


def render(text: str) -> str:
    """The script of ``text`` (its comments and commands) with fresh outputs."""
    runner = Runner()
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            if out and not out[-1].startswith("#"):
                out.append("")
            out.append(line)
        elif line.startswith("> "):
            if out and not out[-1].startswith("#"):
                out.append("")
            out.append(line)
            out.extend(runner.run(line[2:]))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_transcript(path: Path) -> None:
    want = path.read_text(encoding="utf-8")
    got = render(want)
    if os.environ.get("ARENA_REWRITE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
        return
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True),
                got.splitlines(True),
                f"{path.name} (checked in)",
                f"{path.name} (now)",
            )
        )
        pytest.fail(f"{path.name} changed; if on purpose, rewrite it (module docstring):\n{diff}")


def test_there_are_transcripts() -> None:
    assert {p.stem for p in FILES} >= {"coalesced_heartbeats", "quiesce_and_wake", "node_failure"}
