"""The procedural shapes world: caption grammar, scene renderer and rule-based verifier.

A cheap, exactly checkable GenEval analogue: prompts such as "a yellow square left of a purple
circle" describe whole scenes of flat shapes; ``render_prompt`` draws a random scene satisfying a
prompt and ``verify`` checks a (generated) image against it. The moving-shapes video world
(``motion``, ``motion_render``, ``motion_verifier``) extends it to short clips: "a red circle moving
right while a blue square stays". See ``README.md`` in this folder.
"""

from fastvideo.shapes.grammar import (
    BACKGROUND,
    COLORS,
    RELATIONS,
    SHAPES,
    SKILLS,
    Claim,
    Prompt,
    all_prompts,
    parse_prompt,
    prompt_splits,
    sample_prompts,
    skill_of,
    vocabulary,
)
from fastvideo.shapes.motion import (
    DIRECTIONS,
    MotionClaim,
    all_motion_prompts,
    motion_prompt_splits,
    parse_motion_prompt,
    sample_motion_prompts,
)
from fastvideo.shapes.motion_render import render_video, sample_motion_scene
from fastvideo.shapes.motion_verifier import VideoVerdict, verify_video, verify_video_batch
from fastvideo.shapes.render import Shape, render_prompt, render_scene, sample_scene
from fastvideo.shapes.verifier import Detection, Verdict, detect, verify, verify_batch

__all__ = [
    "BACKGROUND",
    "COLORS",
    "RELATIONS",
    "SHAPES",
    "SKILLS",
    "Claim",
    "Prompt",
    "all_prompts",
    "parse_prompt",
    "prompt_splits",
    "sample_prompts",
    "skill_of",
    "vocabulary",
    "Shape",
    "render_prompt",
    "render_scene",
    "sample_scene",
    "Detection",
    "Verdict",
    "detect",
    "verify",
    "verify_batch",
    "DIRECTIONS",
    "MotionClaim",
    "all_motion_prompts",
    "motion_prompt_splits",
    "parse_motion_prompt",
    "sample_motion_prompts",
    "render_video",
    "sample_motion_scene",
    "VideoVerdict",
    "verify_video",
    "verify_video_batch",
]
