"""The garbage collector while serving: what start-up built is frozen out of its scans.

A serving process holds a large long-lived heap from start-up (the tokenizer and the libraries
behind the model, the schema, graphql-core's tables, the pools). CPython's full collections walked
all of it: under `make bench`'s loads, 16–24 full collections in 40–60 s at 140–200 ms each (a gc
callback in the server process, issue 18), every one a pause of the event loop for every request
in flight. That was the conc-16 tail: p95 three to four times p50. `gc.freeze()` moves every
object alive at that point into a permanent generation that collections never visit; what
requests allocate is collected as before (full collections then took about 12 ms).

Frozen objects are only skipped by the cycle collector: reference counting still frees them. One
that later becomes part of cyclic garbage (a start-up pool connection closed when it is recycled,
say) stays until shutdown, so what can be held that way is bounded by what start-up built (221,066
objects for `make run`, demo catalogue included). The lifespan unfreezes on shutdown, so a process
that builds apps one after another (the tests) gets its cyclic garbage back."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("ragql")


def freeze_startup_objects() -> int:
    """Collect once (so no garbage is frozen), then freeze what is alive. Returns the number of
    objects now frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc: %d start-up objects frozen out of the collector's scans", frozen)
    return frozen


def unfreeze() -> None:
    gc.unfreeze()
