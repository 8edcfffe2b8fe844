"""The reward zoo: one small class per reward behind ``Reward`` (base.py), a registry and ``RewardSet``.

Registered rewards: brightness, jpeg_compressibility, jpeg_incompressibility, hps (HPS-v2.1), pickscore, clip_score, image_reward, videoalign.
Plugins add more by name (``fastvideo.plugins``): the shapes lab's shapes_verifier and
shapes_motion_verifier (videos). Importing this package never imports open_clip or transformers; each model-based reward imports them
in its constructor.
See fastvideo/rewards/README.md for the weights each reward needs and where they go.
"""

from fastvideo.rewards import (  # noqa: F401  (registers rewards)
    clip_scores,
    hps,
    image_reward,
    rule_based,
    videoalign,
)
from fastvideo.rewards.base import (
    Reward,
    RewardWeightsError,
    RewardWeightsNotFoundError,
    ThresholdReward,
    available_rewards,
    build_reward,
    register_reward,
    resolve_device,
    reward_class,
)
from fastvideo.rewards.reward_set import RewardSet, RewardTerm

__all__ = [
    "Reward",
    "RewardSet",
    "RewardTerm",
    "RewardWeightsError",
    "RewardWeightsNotFoundError",
    "ThresholdReward",
    "available_rewards",
    "build_reward",
    "register_reward",
    "resolve_device",
    "reward_class",
]
