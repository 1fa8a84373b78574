"""Background prefetch: build the next batches on a thread while the accelerator runs.

Reading HDF5 features, pooling and tokenizing happen in one daemon thread that fills a bounded
queue, so the training loop only pops ready batches. The queue bound keeps host memory fixed.
Errors raised by the producer are re-raised in the consumer at the position they occurred.

Checkpointing with prefetch: the producer runs ahead, so the iterator's own state is not what the
trainer has consumed. Each :class:`~vlpet_jax.data.batching.Batch` carries the state right after it;
:attr:`Prefetcher.state` is the state of the last batch handed out, which is what a checkpoint must
save (``MultitaskIterator.set_state`` then resumes exactly there).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")
_U = TypeVar("_U")


class _End:
    """Marks the end of the producer's stream."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[_T]):
    """Iterate ``iterable`` with up to ``buffer_size`` items prepared ahead on a thread.

    ``transform`` (e.g. a ``jax.device_put`` of the batch arrays) also runs on the thread. Use as a
    context manager, or call :meth:`close`, to stop the thread early.
    """

    def __init__(
        self,
        iterable: Iterable[_U],
        buffer_size: int = 2,
        transform: Callable[[_U], _T] | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        self._source = iter(iterable)
        self._transform = transform
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
        self._stop = threading.Event()
        self._done = False
        self.state: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._produce, name="vlpet-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Block until there is room, checking for close() so the thread can always exit."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if self._stop.is_set():
                    return
                value = self._transform(item) if self._transform is not None else item
                if not self._put((value, getattr(item, "state", None))):
                    return
        except BaseException as error:  # re-raised in the consumer
            self._put(_Failure(error))
            return
        self._put(_End())

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        value, state = item
        if state is not None:
            self.state = state
        return value

    def close(self) -> None:
        """Stop the producer thread and drop buffered items."""
        self._stop.set()
        self._done = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
