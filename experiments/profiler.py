"""A Trainer profiler that costs nothing per step.

Lightning wraps every hook call and loop stage of a training step in `profiler.profile(name)`,
about 40 times a step. Its default profiler (`PassThroughProfiler`) records nothing, yet each of
those calls builds a generator-based context manager: a fixed cost per step that a fast step
cannot hide. This one hands out a single reusable `nullcontext` instead.
"""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NOTHING
