"""The training engine: one loop for every backbone and strategy.

``finetune(Recipe(...))`` runs a recipe end to end (data, model, strategy plan, epochs
with checkpoints, MLflow metrics, registration); ``launch`` runs it under torchrun for
``--nproc-per-node N``. Nothing here imports torch at module level.
"""

from __future__ import annotations

from zoo.engine.recipe import Recipe, load_recipe_file
from zoo.engine.run import FinetuneResult, finetune, run_dir

__all__ = ["FinetuneResult", "Recipe", "finetune", "launch", "load_recipe_file", "run_dir"]


def launch(recipe: Recipe, *, resume: bool = False, restart: bool = False) -> FinetuneResult:
    """Run the recipe: in this process, or under torchrun when ``nproc_per_node > 1``."""
    import os

    if recipe.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        from zoo.engine.distributed import launch_torchrun

        return launch_torchrun(recipe, resume=resume, restart=restart)
    return finetune(recipe, resume=resume, restart=restart)
