"""freeze_startup_heap: what start-up allocated leaves the collector's generations;
what comes after is collected as before."""

from __future__ import annotations

import gc

from compute_worker.adapters.system import freeze_startup_heap


def test_the_start_up_heap_is_frozen_and_later_garbage_still_collected() -> None:
    loaded = [object() for _ in range(100)]  # an object graph alive at start-up
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen >= 100
        collected = (found for generation in range(3) for found in gc.get_objects(generation))
        assert not any(found is loaded for found in collected)  # out of every generation

        cycle: list[object] = []
        cycle.append(cycle)  # garbage made after start-up, only a collection frees
        del cycle
        assert gc.collect() >= 1
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
