"""RoomsClient's stream rule (client.rooms): an update is applied only when its ``prev``
shows nothing of the topic was missed since the view's index; otherwise the view is
read again, and updates that arrive meanwhile are held and sorted out after the read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.rooms import RoomsClient, _Stream, default_token_file
from nodes.codec import Update
from nodes.local import make_cluster_file


def _upd(index: int, prev: int | None) -> Update:
    return Update(index, 1, "rooms", "c", 1, {"room": "r1", "prev": prev}, [], clock_ms=index)


@pytest.fixture
def rc(tmp_path: Path) -> Iterator[RoomsClient]:
    client = RoomsClient(make_cluster_file(tmp_path, 1))  # no node runs: nothing is sent
    yield client
    client.close()


def test_updates_apply_in_order_while_prev_chains_to_the_view(rc: RoomsClient) -> None:
    stream, reads, applied = _Stream(), [], []
    stream.held = [_upd(12, 9), _upd(9, 7), _upd(7, 3)]
    rc._caught_up(stream, 8, lambda: reads.append(1), lambda u: applied.append(u.index))
    assert applied == [9, 12] and stream.index == 12 and not reads  # 7 was in the read
    rc._on_stream(stream, _upd(12, 9), lambda: reads.append(1), applied.append)
    assert stream.index == 12 and not reads  # a repeat changes nothing


@pytest.mark.parametrize("prev", [13, None])
def test_a_missed_update_or_an_unknown_prev_reads_the_view_again(
        rc: RoomsClient, prev: int | None) -> None:
    stream, reads, applied = _Stream(), [], []
    rc._caught_up(stream, 12, lambda: reads.append(1), lambda u: applied.append(u.index))
    rc._on_stream(stream, _upd(15, prev), lambda: reads.append(1), applied.append)
    assert reads == [1] and applied == [] and stream.index == -1 and stream.resyncs == 1
    rc._on_stream(stream, _upd(16, 15), lambda: reads.append(1), applied.append)
    assert len(stream.held) == 2  # held until the read answers
    rc._caught_up(stream, 15, lambda: reads.append(1), lambda u: applied.append(u.index))
    assert applied == [16] and stream.index == 16 and reads == [1]


def test_the_default_token_file_is_per_cluster_and_name_under_the_state_dir(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    path = default_token_file("arena-1", "Ann")
    assert path == tmp_path / "arena" / "seat-arena-1-ann.json"
    assert default_token_file("arena-2", "Ann") != path
