"""Where ``arena up`` puts its windows: tiles of the screen they open on (issue 10 item 2)."""

from __future__ import annotations

import os

import pygame
import pytest

from client.app import MIN_TILE, SLOT_ENV, place_window, tile_windows

Rect = tuple[int, int, int, int]


def _inside(rect: Rect, screen: tuple[int, int]) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= screen[0] and y + h <= screen[1]


def _overlap(a: Rect, b: Rect) -> bool:
    return pygame.Rect(a).colliderect(pygame.Rect(b))


def test_two_windows_on_a_1920_screen_sit_side_by_side_whole() -> None:
    """The second window used to start at x = 990 and, 960 px wide, lose its score column."""
    rects = tile_windows((1920, 1080), 2)
    assert len(rects) == 2
    assert all(_inside(r, (1920, 1080)) for r in rects)
    assert not _overlap(*rects)
    assert rects[0][1] == rects[1][1] and rects[0][0] < rects[1][0]  # one row
    assert all(r[2] >= 900 and r[3] >= MIN_TILE[1] for r in rects)


def test_a_big_screen_does_not_blow_the_windows_up() -> None:
    assert [r[2:] for r in tile_windows((3840, 2160), 2)] == [(1200, 800), (1200, 800)]


def test_four_windows_make_a_grid() -> None:
    rects = tile_windows((1920, 1080), 4)
    assert len({r[0] for r in rects}) == 2 and len({r[1] for r in rects}) == 2
    assert all(_inside(r, (1920, 1080)) for r in rects)
    assert not any(_overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])


def test_windows_that_would_be_too_small_are_stacked_readable_instead() -> None:
    rects = tile_windows((1024, 768), 2)  # two tiles would be 497 px wide
    assert all(_inside(r, (1024, 768)) for r in rects)
    assert all(r[2] >= MIN_TILE[0] and r[3] >= MIN_TILE[1] for r in rects)
    assert rects[0][:2] != rects[1][:2]  # cascaded: both title bars show


@pytest.mark.parametrize("screen", [(800, 600), (1280, 1024), (1366, 768), (2560, 1440)])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_every_window_is_on_the_screen(screen: tuple[int, int], count: int) -> None:
    rects = tile_windows(screen, count)
    assert len(rects) == count
    assert all(_inside(r, screen) for r in rects), rects
    assert all(r[2] >= MIN_TILE[0] and r[3] >= MIN_TILE[1] for r in rects), rects


def test_no_windows_no_tiles() -> None:
    assert tile_windows((1920, 1080), 0) == []


def test_a_window_with_a_slot_takes_its_tile_of_the_display(
    display: pygame.Surface, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SDL_VIDEO_WINDOW_POS", raising=False)
    screen = pygame.display.get_desktop_sizes()[0]
    assert place_window((1200, 800), {}) == (1200, 800)  # no slot: as asked
    assert "SDL_VIDEO_WINDOW_POS" not in os.environ
    x, y, w, h = tile_windows(screen, 2, (1200, 800))[1]
    assert place_window((1200, 800), {SLOT_ENV: "1/2"}) == (w, h)
    assert os.environ["SDL_VIDEO_WINDOW_POS"] == f"{x},{y}"
    assert place_window((1200, 800), {SLOT_ENV: "2/2"}) == (1200, 800)  # no such slot
