"""Optimistic hits: shown at once, confirmed by the committed state, rolled back visibly."""

from __future__ import annotations

from client_helpers import ScriptedClock, round_table, session_for, ui_for

from client.fake import FakeSession
from client.viewmodel import (
    CONFIRMED_S,
    LOST_S,
    PENDING_GIVE_UP_S,
    TRANSPORT_GRACE_S,
    MarkerView,
    Pending,
    UiState,
    ViewModel,
    build_view,
)


def _fire(
    session: FakeSession, ui: UiState, target_id: int, now: float
) -> tuple[ViewModel, Pending]:
    vm = build_view(session, ui, now)
    target = next(t for t in vm.targets if t.id == target_id)
    pending = session.submit({"type": "hit", "round": vm.round_number, "target": target_id})
    ui.fire_hit(vm.game_number, vm.round_number, target, pending, now)
    return vm, pending


def _frame(session: FakeSession, ui: UiState, clock: ScriptedClock) -> ViewModel:
    session.poll()
    ui.update(session.state, session.client_id, session.drain_notices(), clock())
    return build_view(session, ui, clock())


def _markers(vm: ViewModel) -> list[tuple[int, str, str]]:
    return [(m.target, m.status, m.text) for m in vm.markers]


def test_a_click_shows_a_pending_marker_before_anything_is_committed(clock: ScriptedClock) -> None:
    session, ui = session_for(round_table(), clock), ui_for()
    _fire(session, ui, 0, clock())
    vm = build_view(session, ui, clock())
    assert _markers(vm) == [(0, "pending", "")]
    assert next(t for t in vm.targets if t.id == 0).taken_by is None  # the state is untouched


def test_pending_becomes_confirmed_when_the_state_shows_the_target_mine(
    clock: ScriptedClock,
) -> None:
    session, ui = session_for(round_table(), clock), ui_for()
    _fire(session, ui, 0, clock())
    vm = _frame(session, ui, clock)
    assert _markers(vm) == [(0, "confirmed", "+1")]
    assert next(t for t in vm.targets if t.id == 0).mine
    assert next(r.score for r in vm.standings if r.me) == 2
    clock.advance(CONFIRMED_S + 0.01)
    assert _frame(session, ui, clock).markers == ()  # the point stays; the "+1" goes


def test_pending_rolls_back_when_another_player_took_the_target(clock: ScriptedClock) -> None:
    table = round_table()
    session, ui = session_for(table, clock), ui_for()
    _fire(session, ui, 0, clock())
    assert table.do("c2", "hit", round=1, target=0)["ok"]  # bob's hit commits first
    vm = _frame(session, ui, clock)
    assert _markers(vm) == [(0, "lost", "lost to bob")]
    assert next(t for t in vm.targets if t.id == 0).taken_by == "bob"
    clock.advance(LOST_S / 2)
    marker: MarkerView = _frame(session, ui, clock).markers[0]
    assert marker.status == "lost" and 0 < marker.fade < 1  # still flashing, fading
    clock.advance(LOST_S / 2 + 0.01)
    assert _frame(session, ui, clock).markers == ()


def test_pending_rolls_back_on_a_rejection_even_before_the_state_says_why(
    clock: ScriptedClock,
) -> None:
    session, ui = session_for(round_table(), clock), ui_for()
    _fire(session, ui, 3, clock())
    pending = ui.markers[(1, 1, 3)].pending
    # the answer arrives first (the update that shows the taker is still on its way)
    pending.done, pending.result = (
        True,
        {"ok": False, "error": "target_taken", "message": "target 3 was already taken by cy"},
    )
    ui.update(session.state, session.client_id, [], clock())
    assert _markers(build_view(session, ui, clock())) == [(3, "lost", "lost to cy")]


def test_a_late_hit_is_rolled_back_as_too_late(clock: ScriptedClock) -> None:
    session, ui = session_for(round_table(), clock), ui_for()
    _fire(session, ui, 4, clock())
    ui.markers[(1, 1, 4)].pending.done = True
    ui.markers[(1, 1, 4)].pending.result = {"ok": False, "error": "round_over", "message": "late"}
    ui.update(session.state, session.client_id, [], clock())
    assert _markers(build_view(session, ui, clock())) == [(4, "lost", "too late")]


def test_a_hit_that_never_gets_an_answer_is_rolled_back_after_a_while(
    clock: ScriptedClock,
) -> None:
    session, ui = session_for(round_table(), clock), ui_for()
    vm = build_view(session, ui, clock())
    ui.fire_hit(vm.game_number, 1, vm.targets[0], Pending(), clock())  # lost on the wire
    clock.advance(PENDING_GIVE_UP_S - 0.1)
    ui.update(session.state, session.client_id, [], clock())
    assert ui.markers[(1, 1, 0)].status == "pending"
    clock.advance(0.2)
    ui.update(session.state, session.client_id, [], clock())
    assert (ui.markers[(1, 1, 0)].status, ui.markers[(1, 1, 0)].text) == ("lost", "no answer")


def test_rejected_commands_other_than_hits_become_error_notices(clock: ScriptedClock) -> None:
    session, ui = session_for(round_table(), clock, "c2"), ui_for("bob")
    ui.watch("start", session.submit({"type": "start"}))
    vm = _frame(session, ui, clock)
    assert [(n.kind, n.text[:6]) for n in vm.notices] == [("error", "start:")]


def test_a_transport_failure_waits_briefly_for_the_committed_state(clock: ScriptedClock) -> None:
    table = round_table()
    session, ui = session_for(table, clock), ui_for()
    vm = build_view(session, ui, clock())
    lost_on_wire, applied_anyway = [t for t in vm.targets if t.taken_by is None][:2]
    for target in (lost_on_wire, applied_anyway):
        ui.fire_hit(1, 1, target, Pending(done=True, error="node n1 timed out"), clock())
    table.do("c1", "hit", round=1, target=applied_anyway.id)  # the retry did commit
    ui.update(session.state, session.client_id, [], clock())
    assert ui.markers[(1, 1, lost_on_wire.id)].status == "pending"
    assert ui.markers[(1, 1, applied_anyway.id)].status == "confirmed"
    clock.advance(TRANSPORT_GRACE_S)
    ui.update(session.state, session.client_id, [], clock())
    assert ui.markers[(1, 1, lost_on_wire.id)].text == "no answer"
