"""Records of the four video-text tasks in the VALUE formats (SPEC.md §6), from video pools.

A pool is a list of ``(vid_name, Video)``. Times are seconds at ``fps`` frames per second. Each
event gets a time window of two frames either side (events are at least three frames apart, so a
window shows exactly one event). Subtitles are small talk that never names an object, so the
answers and descriptions come from the frames only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlpet_jax.data.synthetic.grammar import with_articles
from vlpet_jax.data.synthetic.video import Event, Video
from vlpet_jax.data.synthetic.vocab import COLORS, DIRECTION_PHRASE, DIRECTIONS, SHAPES

VideoPool = Sequence[tuple[str, Video]]
WINDOW = 2  # frames either side of an event
STAYS = "it stays"
MOVE_CHOICES = (*(DIRECTION_PHRASE[d] for d in DIRECTIONS), STAYS)
ALL_NAMES = tuple(with_articles(f"a {c} {s}") for c in COLORS for s in SHAPES)
SUBTITLE_LINES = {
    "tv": ("here we go", "what will happen next", "keep watching", "look at this", "wait for it"),
    "how2": ("first we set things up", "now watch closely", "this is the next step", "that is it"),
    "yc2": ("let us start", "now the next step", "mix it well", "almost done", "that looks good"),
}


def event_window(video: Video, event: Event, fps: float) -> tuple[float, float]:
    start = max(0, event.frame - WINDOW) / fps
    end = min(video.num_frames, event.frame + WINDOW) / fps
    return round(start, 2), round(end, 2)


def _choices(
    correct: str, distractors: Sequence[str], num_choices: int, rng: np.random.Generator
) -> tuple[list[str], int]:
    """``correct`` plus ``num_choices - 1`` of ``distractors`` (in their order of preference,
    randomly drawn within it), shuffled; returns the choices and the index of the correct one."""
    picked = list(distractors[: num_choices - 1])
    if len(picked) < num_choices - 1:
        raise ValueError(f"not enough distractors for {num_choices} choices: {distractors}")
    choices = [correct, *picked]
    order = rng.permutation(num_choices)
    return [choices[i] for i in order], int(np.argmax(order == 0))


def _shuffled(items: Sequence[str], rng: np.random.Generator) -> list[str]:
    return [items[i] for i in rng.permutation(len(items))]


def _static_objects(video: Video) -> list[str]:
    """Names of objects that no event touches (the right answer to "where does it move?" is
    "it stays")."""
    touched = {e.subject.name() for e in video.events} | {
        e.after.name() for e in video.events if e.after is not None
    }
    return [o.name() for o in video.initial if o.name() not in touched]


def _question(
    video: Video, event: Event, num_choices: int, rng: np.random.Generator
) -> tuple[str, list[str], int]:
    """The question about ``event``, its choices and the index of the right one."""
    if event.kind == "move":
        static = _static_objects(video)
        if static and rng.random() < 1.0 / len(MOVE_CHOICES):
            name, correct = static[rng.integers(len(static))], STAYS
        else:
            name, correct = event.subject.name(), DIRECTION_PHRASE[event.direction or ""]
        others = _shuffled([c for c in MOVE_CHOICES if c != correct], rng)
        return f"where does the {name} move?", *_choices(correct, others, num_choices, rng)
    if event.kind == "turn":
        assert event.before is not None and event.after is not None
        correct = event.after.color
        others = _shuffled([c for c in COLORS if c not in (correct, event.before.color)], rng)
        question = f"what color does the {event.before.name()} turn?"
        return question, *_choices(correct, others, num_choices, rng)
    present = {
        with_articles(f"a {o.name()}") for t in range(video.num_frames) for o in video.scene_at(t)
    }
    absent = _shuffled([n for n in ALL_NAMES if n not in present], rng)
    correct = with_articles(f"a {event.subject.name()}")
    if event.kind == "appear":
        return "what appears?", *_choices(correct, absent, num_choices, rng)
    # Other objects on screen just before make the best distractors: the frames must tell which.
    on_screen = [with_articles(f"a {o.name()}") for o in video.scene_at(event.frame - 1)]
    others = _shuffled([n for n in on_screen if n != correct], rng) + absent
    return "what disappears?", *_choices(correct, others, num_choices, rng)


def multiple_choice_records(
    pool: VideoPool, rng: np.random.Generator, num_choices: int, first_qid: int, fps: float
) -> list[dict[str, Any]]:
    """TVQA (5 choices) / How2QA (4): one question per event, ``ts`` = ``"start-end"``."""
    records = []
    for vid_name, video in pool:
        for event in video.events:
            question, choices, answer_idx = _question(video, event, num_choices, rng)
            start, end = event_window(video, event, fps)
            record: dict[str, Any] = {"qid": first_qid + len(records), "q": question}
            record.update({f"a{i}": c for i, c in enumerate(choices)})
            record.update(
                {
                    "answer_idx": answer_idx,
                    "ts": f"{start:.2f}-{end:.2f}",
                    "vid_name": vid_name,
                    "show_name": "synthetic",
                }
            )
            records.append(record)
    return records


def clip_caption_records(
    pool: VideoPool, first_clip_id: int, first_desc_id: int, fps: float
) -> list[dict[str, Any]]:
    """TVC: one clip per event, ``ts`` = ``[start, end]``, two paraphrased descriptions."""
    records = []
    desc_id = first_desc_id
    for vid_name, video in pool:
        for event in video.events:
            descs = []
            for variant in (0, 1):
                descs.append({"desc": event.describe(variant), "desc_id": desc_id})
                desc_id += 1
            records.append(
                {
                    "vid_name": vid_name,
                    "duration": video.num_frames / fps,
                    "ts": list(event_window(video, event, fps)),
                    "clip_id": first_clip_id + len(records),
                    "descs": descs,
                }
            )
    return records


def video_description_records(
    pool: VideoPool, first_clip_id: int, first_desc_id: int, fps: float
) -> list[dict[str, Any]]:
    """YC2C: one record per video describing all its events in order ("... then ..."), no ts."""
    records = []
    desc_id = first_desc_id
    for vid_name, video in pool:
        descs = []
        for variant in (0, 1):
            text = " then ".join(e.describe(variant) for e in video.events)
            descs.append({"desc": text, "desc_id": desc_id})
            desc_id += 1
        records.append(
            {
                "vid_name": vid_name,
                "duration": video.num_frames / fps,
                "clip_id": first_clip_id + len(records),
                "descs": descs,
            }
        )
    return records


def subtitle_records(
    pool: VideoPool, rng: np.random.Generator, domain: str, fps: float
) -> list[dict[str, Any]]:
    """``{vid_name, sub: [{text, start, end}]}``: one to three lines of small talk per video."""
    lines = SUBTITLE_LINES[domain]
    records = []
    for vid_name, video in pool:
        duration = video.num_frames / fps
        count = int(rng.integers(1, 4))
        starts = np.sort(rng.uniform(0.0, duration * 0.8, size=count))
        sub = [
            {
                "text": lines[rng.integers(len(lines))],
                "start": round(float(s), 2),
                "end": round(min(duration, float(s) + 1.5), 2),
            }
            for s in starts
        ]
        records.append({"vid_name": vid_name, "sub": sub})
    return records
