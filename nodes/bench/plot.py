"""Charts for docs/benchmarks.md, drawn with pygame (already a dependency) into a PNG:
the single-client latency histogram and the failover trials, Arena beside PySyncObj.

    python -m nodes.bench.plot bench.json docs/benchmarks.png
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402

W, H = 1200, 460
BG, FG, GRID = (24, 27, 36), (225, 228, 235), (60, 66, 80)
ARENA, RIVAL = (72, 199, 116), (237, 147, 66)
ARENA_EMBEDDED = (90, 160, 230)


def _histogram(surface: pygame.Surface, font: pygame.font.Font, rect: pygame.Rect,
               series: list[tuple[str, list[float], tuple[int, int, int]]], title: str,
               unit: str, cap: float) -> None:
    pygame.draw.rect(surface, GRID, rect, 1)
    surface.blit(font.render(title, True, FG), (rect.x, rect.y - 28))
    bins = 30
    width = cap / bins
    counts = []
    for _, samples, _ in series:
        c = [0] * bins
        for x in samples:
            c[min(bins - 1, int(x / width))] += 1
        n = max(1, len(samples))
        counts.append([k / n for k in c])
    top = max((max(c) for c in counts), default=1) or 1
    bar = rect.width / bins / max(1, len(series))
    for s, (name, samples, colour) in enumerate(series):
        for b, frac in enumerate(counts[s]):
            h = int((rect.height - 20) * frac / top)
            x = rect.x + b * rect.width / bins + s * bar
            pygame.draw.rect(surface, colour, (int(x), rect.bottom - h, max(1, int(bar) - 1), h))
        label = font.render(f"{name} ({len(samples)})", True, colour)
        surface.blit(label, (rect.right - 8 - label.get_width(), rect.y + 8 + 24 * s))
    for k in range(0, 6):
        v = cap * k / 5
        x = rect.x + rect.width * k / 5
        label = font.render(f"{v:g} {unit}", True, FG)
        surface.blit(label, (int(x) - label.get_width() // 2, rect.bottom + 6))


def draw(report: dict, out: Path) -> None:
    pygame.font.init()
    surface = pygame.Surface((W, H))
    surface.fill(BG)
    font = pygame.font.Font(None, 24)
    ours, theirs = report.get("arena") or {}, report.get("pysyncobj") or {}
    lat = [("Arena, client process (durable)", ours.get("latency", {}).get("samples_ms", []),
            ARENA)]
    embedded = ours.get("latency", {}).get("embedded", {}).get("durable", {}).get("samples_ms")
    if embedded:
        lat.append(("Arena, in the leader (durable)", embedded, ARENA_EMBEDDED))
    their_lat = theirs.get("latency", {}).get("unbatched", {}).get("samples_ms")
    if their_lat:
        lat.append(("PySyncObj, in the leader (memory)", their_lat, RIVAL))
    cap = max(2.0, 2 * max((v.get("single_client", {}).get("p50", 0) for v in [ours.get("latency", {})]),
                           default=1))
    _histogram(surface, font, pygame.Rect(50, 60, 500, 330), lat,
               "single-client write latency (fraction of writes)", "ms", round(cap, 1))
    fo = [("Arena", ours.get("failover", {}).get("trials", []), ARENA)]
    if theirs.get("failover", {}).get("trials"):
        fo.append(("PySyncObj", theirs["failover"]["trials"], RIVAL))
    _histogram(surface, font, pygame.Rect(660, 60, 500, 330), fo,
               "kill -9 the leader -> next committed write", "ms", 600.0)
    pygame.image.save(surface, str(out))
    pygame.font.quit()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
