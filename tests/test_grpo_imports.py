"""The GRPO core stays pure torch: light to import and free of model-library names."""

import pathlib
import re
import subprocess
import sys

GRPO_DIR = pathlib.Path(__file__).resolve().parents[1] / "fastvideo" / "grpo"

PROBE = """
import sys
import torch
before = set(sys.modules)
import fastvideo.grpo
from fastvideo.grpo import flow_step, ddim_step, group_advantages, grpo_loss, flow_sigmas, ddim_schedule
new = sorted(name for name in set(sys.modules) - before if not name.startswith("fastvideo"))
print(",".join(new))
"""


def test_importing_the_core_pulls_nothing_beyond_torch():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    new_modules = [name for name in result.stdout.strip().split(",") if name]
    foreign = [name for name in new_modules if name.split(".")[0] not in sys.stdlib_module_names]
    assert foreign == [], f"fastvideo.grpo imported {foreign}"
    heavy = ("diffusers", "transformers", "scipy", "PIL", "accelerate", "huggingface_hub", "open_clip")
    assert not any(name.split(".")[0] in heavy for name in new_modules)


def test_core_names_no_model_library():
    pattern = re.compile(r"diffusers|transformers|flux|hunyuan")
    offenders = [path.name for path in GRPO_DIR.glob("*.py") if pattern.search(path.read_text())]
    assert offenders == []
