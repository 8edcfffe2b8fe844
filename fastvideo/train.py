"""Entry point of every GRPO run:

    torchrun --nproc_per_node=N -m fastvideo.train --config configs/debug/flux_tiny.yaml --output_dir DIR \
        [--section.field value ...]

``--dry_run [--dry_run.world_size N]`` builds the recipe at real size on fake tensors and prints its per-GPU
memory plan instead of training (``fastvideo.dryrun``). ``python -m fastvideo.train --help`` lists every config field with its unit and default. A mistake the
user can fix (bad config, missing model, prompt file or embedding cache) prints one ``error:`` message
and exits with code 2; ``--debug`` or ``FASTVIDEO_DEBUG=1`` shows its traceback (``fastvideo.errors``).
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> None:
    """Parse the config and train; a ``UserError`` (bad config, missing model...) propagates to ``run_cli``."""
    from fastvideo.config import parse_args

    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    if cfg.dry_run.enabled:
        from fastvideo.dryrun import main_dry_run

        main_dry_run(cfg, recipe=_recipe_name(sys.argv[1:] if argv is None else argv))
        return
    from fastvideo.distributed import destroy_distributed, init_distributed
    from fastvideo.training.trainer import GRPOTrainer

    env = init_distributed()
    logging.basicConfig(level=logging.INFO if env.is_main else logging.WARNING,
                        format=f"[%(asctime)s rank{env.rank}] %(message)s", datefmt="%H:%M:%S")
    try:
        trainer = GRPOTrainer(cfg, env)
        trainer.train()
    except BaseException:
        # no barrier on failure: torchrun tears the other ranks down when this one exits non-zero
        destroy_distributed(wait=False)
        raise
    destroy_distributed()


def _recipe_name(argv: list[str]) -> str:
    """The config file's name (``configs/flux_grpo.yaml`` -> ``flux_grpo``) for the dry run's report."""
    for index, token in enumerate(argv):
        if token.startswith("--config"):
            value = token.split("=", 1)[1] if "=" in token else (argv[index + 1] if index + 1 < len(argv) else "")
            return os.path.splitext(os.path.basename(value))[0]
    return ""


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)
