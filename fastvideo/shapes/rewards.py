"""The shapes lab's rule-based rewards: ``shapes_verifier`` (images, ``fastvideo.shapes.verifier``) and
``shapes_motion_verifier`` (videos, ``fastvideo.shapes.motion_verifier``).

They reach the framework's reward registry as a plugin: ``pyproject.toml`` lists this module under the
``fastvideo.plugins`` entry points, and ``fastvideo.rewards`` imports it the first time a config names
a reward it does not know (``fastvideo.plugins.load_plugins``). The framework never imports the lab.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastvideo.rewards.base import Reward, register_reward


@register_reward("shapes_verifier")
class ShapesVerifierReward(Reward):
    """Rule-based compositional reward of the shapes world (``fastvideo.shapes.verifier``).

    ``mode="score"``: the fraction of the prompt's claims the image satisfies, in [0, 1];
    ``mode="binary"``: 1 if every claim holds else 0; ``mode="crisp"``: ``score`` with each satisfied
    claim paid only the mean quality (colour close to the palette and uniform, mask close to the ideal
    shape) of the shapes it names, so blobs the verifier accepts earn less than crisp shapes
    (``crisp <= score``); ``mode="crisp_partial"``: the same quality weights on GenEval-style partial
    credit (k of n shapes: 1 - |n - k| / n). Formulas: ``fastvideo.shapes.quality``. ``correct_batch``
    (the held-out accuracy) stays the strict verdict in every mode. Runs on the CPU whatever
    ``device`` says.
    """

    input_kind = "image"
    modes = ("score", "binary", "crisp", "crisp_partial")

    def __init__(
        self, mode: str = "score", device: str | torch.device | None = "cpu", batch_size: int = 256
    ) -> None:
        if mode not in self.modes:
            raise ValueError(f"unknown shapes_verifier mode {mode!r}; expected one of {self.modes}")
        super().__init__(device="cpu", batch_size=batch_size)
        from fastvideo.shapes.verifier import verify_batch

        self.mode = mode
        self._verify_batch = verify_batch

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        if self.mode.startswith("crisp"):
            from fastvideo.shapes.quality import crisp_batch

            return crisp_batch(images, prompts, partial=self.mode == "crisp_partial")[0]
        scores, correct = self._verify_batch(images, prompts)
        chosen = scores if self.mode == "score" else correct
        return torch.as_tensor(chosen).float().reshape(-1)

    is_verifier = True

    def correct_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        return torch.as_tensor(self._verify_batch(images, prompts)[1]).float().reshape(-1)

    @classmethod
    def prompt_category(cls, text: str) -> str | None:
        """The prompt's grammar skill (per-skill reports of ``fastvideo.inference.evaluate``)."""
        from fastvideo.shapes.grammar import skill_of

        try:
            return skill_of(text)
        except ValueError:
            return None


@register_reward("shapes_motion_verifier")
class ShapesMotionVerifierReward(Reward):
    """Verifier reward for videos (B, T, 3, H, W) in [0, 1], as the trainer decodes video models.

    ``mode="score"``: the fraction of the prompt's claims the video satisfies, in [0, 1] (per object:
    present exactly once in every frame, moving in the stated direction; plus nothing else);
    ``mode="binary"``: 1 if every claim holds else 0; ``mode="frames"``: the same claims with partial
    credit per frame (``VideoVerdict.frame_score``: "exactly one X" and "nothing else" earn the fraction
    of frames where they hold), a denser signal for weak models whose clips rarely hold a claim in all
    9 frames, which pays an empty clip 1/3 for a one-object prompt; ``mode="present"``: ``frames`` with
    "nothing else" credited only in frames where every claimed object is present once
    (``VideoVerdict.present_score``; an empty clip earns 0). Prompts must belong to the motion grammar
    (``fastvideo.shapes.motion``); videos need >= 5 frames. Runs on the CPU whatever ``device`` says.
    """

    input_kind = "video"
    modes = ("score", "binary", "frames", "present")

    def __init__(
        self, mode: str = "score", device: str | torch.device | None = "cpu", batch_size: int = 64
    ) -> None:
        if mode not in self.modes:
            raise ValueError(f"unknown shapes_motion_verifier mode {mode!r}; expected one of {self.modes}")
        super().__init__(device="cpu", batch_size=batch_size)
        from fastvideo.shapes.motion_verifier import verify_video
        from fastvideo.shapes.verifier import verdict_batch

        self.mode = mode
        self._verify, self._verdict_batch = verify_video, verdict_batch

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        verdicts = self._verdict_batch(self._verify, images, prompts, "videos")
        field = {"score": "score", "binary": "correct", "frames": "frame_score",
                 "present": "present_score"}[self.mode]
        return torch.tensor([float(getattr(v, field)) for v in verdicts], dtype=torch.float32)
