"""Short videos: a scene on the 3×3 video lattice that changes through a few discrete events.

An event happens at one frame: an object moves one lattice step (left/right/up/down), turns another
colour, appears, or disappears. Every object is named by colour and shape, and names stay unique
at all times, so "the red cube" always means one object and a description of an event
("the red cube turns blue") is unambiguous. Frames are rendered with the image renderer; the frame
count varies per video so that the feature pipeline's pad (T < 64) and pool (T > 64) paths both
occur (SPEC.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlpet_jax.data.synthetic.grammar import with_articles
from vlpet_jax.data.synthetic.render import render_scene
from vlpet_jax.data.synthetic.scenes import (
    VIDEO_LATTICE,
    Scene,
    SceneObject,
    free_positions,
    sample_object,
)
from vlpet_jax.data.synthetic.vocab import COLORS, DIRECTION_PHRASE, DIRECTION_STEP, DIRECTIONS

EVENT_KINDS = ("move", "turn", "appear", "disappear")
MIN_EVENT_GAP = 3  # frames between events, so a time window can isolate one
MAX_OBJECTS = 5


@dataclass(frozen=True)
class Event:
    """``before`` is the object as it was (None for appear), ``after`` as it is (None for
    disappear); ``direction`` is set for moves."""

    kind: str
    frame: int
    before: SceneObject | None
    after: SceneObject | None
    direction: str | None = None

    @property
    def subject(self) -> SceneObject:
        obj = self.before or self.after
        assert obj is not None
        return obj

    def describe(self, variant: int = 0) -> str:
        """One of two paraphrases, e.g. "the red cube turns blue" / "the red cube becomes blue"."""
        name = self.subject.name()
        if self.kind == "move":
            verb = ("moves", "goes")[variant]
            return f"the {name} {verb} {DIRECTION_PHRASE[self.direction or '']}"
        if self.kind == "turn":
            verb = ("turns", "becomes")[variant]
            return f"the {name} {verb} {self.after.color if self.after else ''}"
        if self.kind == "appear":
            return with_articles(f"a {name} {('appears', 'shows up')[variant]}")
        return f"the {name} {('disappears', 'vanishes')[variant]}"


@dataclass(frozen=True)
class Video:
    num_frames: int
    initial: Scene
    events: tuple[Event, ...]

    def scene_at(self, frame: int) -> Scene:
        """What frame ``frame`` shows: the initial scene after every event up to that frame."""
        scene = self.initial
        for event in self.events:
            if event.frame <= frame:
                scene = apply_event(scene, event)
        return scene

    def render(self, rng: np.random.Generator) -> np.ndarray:
        """(T, 56, 56, 3) float32 frames, each with fresh pixel noise."""
        return np.stack(
            [render_scene(self.scene_at(t), VIDEO_LATTICE, rng) for t in range(self.num_frames)]
        )


def apply_event(scene: Scene, event: Event) -> Scene:
    """The scene after ``event``: ``before`` replaced by ``after`` (either may be None)."""
    objects = [o for o in scene if o != event.before]
    if event.after is not None:
        objects.append(event.after)
    return tuple(sorted(objects, key=lambda o: o.position))


def _names(scene: Scene) -> set[tuple[str, str]]:
    return {(o.color, o.shape) for o in scene}


def _sample_event(rng: np.random.Generator, scene: Scene, frame: int) -> Event | None:
    """A random applicable event on ``scene`` (None if the drawn kind does not apply)."""
    kind = EVENT_KINDS[rng.integers(len(EVENT_KINDS))]
    if kind == "move":
        moves = []
        free = set(free_positions(scene, VIDEO_LATTICE))
        for obj in scene:
            for d in DIRECTIONS:
                dr, dc = DIRECTION_STEP[d]
                if (obj.row + dr, obj.col + dc) in free:
                    moves.append((obj, d))
        if not moves:
            return None
        obj, d = moves[rng.integers(len(moves))]
        dr, dc = DIRECTION_STEP[d]
        return Event("move", frame, obj, obj.moved(obj.row + dr, obj.col + dc), d)
    if kind == "turn":
        obj = scene[rng.integers(len(scene))]
        taken = _names(scene)
        colors = [c for c in COLORS if c != obj.color and (c, obj.shape) not in taken]
        if not colors:
            return None
        return Event("turn", frame, obj, obj.recoloured(colors[rng.integers(len(colors))]))
    if kind == "appear":
        free = free_positions(scene, VIDEO_LATTICE)
        if len(scene) >= MAX_OBJECTS or not free:
            return None
        row, col = free[rng.integers(len(free))]
        new = sample_object(rng, row, col)
        if (new.color, new.shape) in _names(scene):
            return None
        return Event("appear", frame, None, new)
    if len(scene) <= 1:
        return None
    return Event("disappear", frame, scene[rng.integers(len(scene))], None)


def sample_video(
    rng: np.random.Generator,
    num_frames: tuple[int, int],
    num_objects: tuple[int, int] = (2, 3),
    num_events: tuple[int, int] = (1, 2),
) -> Video:
    """A video of ``num_frames[0]..[1]`` frames with ``num_events[0]..[1]`` events (inclusive)."""
    low, high = num_frames
    count = int(rng.integers(num_events[0], num_events[1] + 1))
    if low < 2 + count * MIN_EVENT_GAP:
        raise ValueError(f"{low} frames are too few for {count} events {MIN_EVENT_GAP} apart")
    length = int(rng.integers(low, high + 1))
    scene = _unique_scene(rng, num_objects)
    initial = scene
    # Event frames: spaced MIN_EVENT_GAP apart inside [2, length - 2].
    slack = (length - 4) - (count - 1) * MIN_EVENT_GAP
    offsets = np.sort(rng.integers(0, slack + 1, size=count))
    frames = [2 + int(o) + i * MIN_EVENT_GAP for i, o in enumerate(offsets)]
    events = []
    for frame in frames:
        event = None
        while event is None:
            event = _sample_event(rng, scene, frame)
        events.append(event)
        scene = apply_event(scene, event)
    return Video(length, initial, tuple(events))


def _unique_scene(rng: np.random.Generator, num_objects: tuple[int, int]) -> Scene:
    """Objects with distinct (colour, shape) names at distinct lattice positions."""
    count = int(rng.integers(num_objects[0], num_objects[1] + 1))
    cells = rng.choice(VIDEO_LATTICE.num_positions, size=count, replace=False)
    objects: list[SceneObject] = []
    for cell in cells:
        while True:
            obj = sample_object(
                rng, int(cell) // VIDEO_LATTICE.side, int(cell) % VIDEO_LATTICE.side
            )
            if (obj.color, obj.shape) not in _names(tuple(objects)):
                objects.append(obj)
                break
    return tuple(sorted(objects, key=lambda o: o.position))
