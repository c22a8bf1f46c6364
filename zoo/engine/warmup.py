"""The libraries a registering run imports later, imported while its data is checked.

The data check's worker processes decode on every core while the process that started
them waits for their results. What that process imports after the check (the backbone's
model code, MLflow and its SQL store, matplotlib's figure code) is seconds of one core:
imported on a thread during the check, it is ready when the model is built, the run is
tracked and the figures are drawn (a linear probe on 500 images: bench/probe_process.py,
docs/benchmarks.md). The thread only imports (no state of the run, no backend chosen,
an import that fails here fails again where the run needs it, and says so there). It
starts once the check's workers run, since a fork copies a thread's half-done import
into the child, and the run waits for it to end before going on (:meth:`Warmup.join`;
after a refusal or Ctrl-C, for the import under way only), so that nothing forked later
sees one either.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import threading
from collections.abc import Sequence

__all__ = ["LATER", "Warmup"]

# What a registering fine-tune imports after the check, in the order it needs them.
LATER = (
    "torch",  # a process alone imports it no sooner (zoo/engine/setup.py)
    "timm",  # the model code zoo's providers and stages build from (and torch._dynamo)
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.pytorch",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
)


class Warmup:
    """``start()`` (at most once; a check too small for worker processes never calls
    it) imports ``modules`` on a daemon thread; ``join()`` waits for it to end, if it
    started; ``stop()`` too, but it leaves the modules not begun (a refusal or Ctrl-C
    then waits for one import at most)."""

    def __init__(self, modules: Sequence[str] | None = None) -> None:
        self.modules = tuple(LATER if modules is None else modules)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zoo-warmup", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # What an import makes lives as long as the process: no collection while the
        # modules import, one after (the garbage of the imports and of whatever ran
        # before is freed, not kept), and what is left out of the collector's way from
        # then on (a full collection walks every object it tracks: with torch and
        # MLflow imported, 0.3-0.4 s each, about ten in a linear probe's process).
        collecting = gc.isenabled()
        gc.disable()
        try:
            for name in self.modules:
                if self._stop.is_set():
                    break
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        finally:
            gc.collect()
            gc.freeze()
            if collecting:
                gc.enable()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        self._stop.set()
        self.join()
