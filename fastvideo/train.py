"""Entry point of every GRPO run:

    torchrun --nproc_per_node=N -m fastvideo.train --config configs/debug/flux_tiny.yaml --output_dir DIR \
        [--section.field value ...]

``python -m fastvideo.train --help`` lists every config field with its unit and default.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> None:
    from fastvideo.config import ConfigError, parse_args

    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    from fastvideo.distributed import destroy_distributed, init_distributed
    from fastvideo.trainer import GRPOTrainer

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


if __name__ == "__main__":
    main()
