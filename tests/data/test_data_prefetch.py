"""The background prefetcher: order, bounded read-ahead, errors, shutdown, checkpoint state."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import pytest

from vlpet_jax.data.prefetch import Prefetcher


@dataclass
class Item:
    value: int
    state: dict


def test_items_arrive_in_order_and_transformed():
    with Prefetcher(range(20), buffer_size=3, transform=lambda x: x * 10) as items:
        assert list(items) == [x * 10 for x in range(20)]


def test_read_ahead_is_bounded():
    produced = []

    def source():
        for i in itertools.count():
            produced.append(i)
            yield i

    with Prefetcher(source(), buffer_size=2) as items:
        assert next(items) == 0
        time.sleep(0.2)
        # One consumed + two buffered + at most one waiting to be put.
        assert len(produced) <= 4


def test_producer_errors_reach_the_consumer_in_place():
    def source():
        yield 1
        yield 2
        raise RuntimeError("feature file is corrupt")

    items = Prefetcher(source())
    assert next(items) == 1 and next(items) == 2
    with pytest.raises(RuntimeError, match="feature file is corrupt"):
        next(items)
    with pytest.raises(StopIteration):
        next(items)


def test_close_stops_an_endless_producer():
    items = Prefetcher(itertools.count(), buffer_size=1)
    next(items)
    items.close()
    assert not items.alive


def test_state_is_that_of_the_last_batch_handed_out():
    source = (Item(i, {"step": i + 1}) for i in range(10))
    with Prefetcher(source, buffer_size=4, transform=lambda item: item.value) as items:
        assert items.state is None
        assert [next(items) for _ in range(3)] == [0, 1, 2]
        time.sleep(0.05)  # the producer is ahead by now
        assert items.state == {"step": 3}
