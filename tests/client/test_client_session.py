"""The session's estimate of the leader's clock (no sockets: ``LeaderClock`` alone)."""

from __future__ import annotations

from client.session import LeaderClock


class Wall:
    """A wall clock (seconds since the epoch) that moves only when told."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_two_windows_read_the_same_leader_time_however_they_got_their_state() -> None:
    """Issue 10 item 4: a window that loaded a snapshot whose last entry was 2.6 s
    old showed a countdown a second behind a window that had followed the updates."""
    wall = Wall(1_000.0)
    following, fresh = LeaderClock(wall), LeaderClock(wall)
    leader_skew_ms = 40  # the leader's clock runs 40 ms ahead of this machine's
    for k in range(5):  # updates reach the following window 1-3 ms after their entry
        wall.t += 0.5
        following.observe(int(wall.t * 1000) + leader_skew_ms - (1 + k % 3))
    last_entry_ms = int(wall.t * 1000) + leader_skew_ms - 3
    wall.t += 2.6  # nothing committed since; the fresh window loads a snapshot now
    truth = int(wall.t * 1000) + leader_skew_ms
    assert abs(following.now_ms(last_entry_ms) - truth) <= 1
    assert abs(fresh.now_ms(last_entry_ms) - truth) <= leader_skew_ms  # no update seen yet
    fresh.observe(truth - 2)  # its first update
    wall.t += 0.25
    assert abs(fresh.now_ms(last_entry_ms) - following.now_ms(last_entry_ms)) <= 1


def test_the_estimate_never_falls_below_the_committed_time() -> None:
    wall = Wall(50.0)
    clock = LeaderClock(wall)
    assert clock.now_ms(floor_ms=90_000) == 90_000  # a leader clock far ahead of ours
    assert clock.now_ms(floor_ms=10_000) == 50_000
