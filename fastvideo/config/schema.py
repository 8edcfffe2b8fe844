"""Typed configuration of a GRPO run.

Nested dataclasses, one per room (model, sampler, grpo, rewards, train, checkpoint, logging, data).
Each field carries a docstring (read by ``python -m fastvideo.train --help``) with its unit.
Loading and command-line overrides live in ``fastvideo.config.loader``, validation in
``fastvideo.config.rules`` (whose choice lists are the tuples of the implementing modules); both are
re-exported by ``fastvideo.config`` (this module imports neither). Their API:

- ``load_config(path=None, overrides=None) -> Config``: defaults < YAML/TOML file (a ``base:`` key names
  files merged first) < dotted overrides (``--grpo.clip_range 1e-4``, ``--a.b=v``, ``a.b=v``; values
  parsed like YAML; ``--rewards.terms.0.weight 2``); validated.
- ``parse_args(argv)``: ``--config``, ``--output_dir``, ``--resume auto|PATH``, ``--help``, overrides.
- ``validate(cfg)``, ``save_config(cfg, path)`` (YAML, round-trips), ``config_to_dict(cfg)``.
- Unknown keys, wrong types and invalid values raise ``ConfigError`` (a ValueError) naming the dotted
  key, with the closest valid keys for a misspelt one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    name: str = "flux"
    """Adapter registry name: flux | sd3 | qwen_image (rectified-flow images), hunyuan | wan (rectified-flow video),
    skyreels_i2v (image-to-video), sd (Stable Diffusion 1.x, DDIM); plugins may register more."""
    path: str | None = None
    """Local diffusers pipeline directory (e.g. ./data/flux). Ignored when ``tiny`` is true."""
    tiny: bool = False
    """Build a tiny randomly initialised model of the real classes (tests and CPU debug runs)."""
    height: int = 720
    """Image height in pixels."""
    width: int = 720
    """Image width in pixels."""
    num_frames: int = 1
    """Frames per sample (video models; 1 for images)."""
    guidance_scale: float = 3.5
    """FLUX/Hunyuan: embedded guidance value; SD, SD3.5, Wan2.1 and SkyReels I2V: real classifier-free guidance
    scale against the empty prompt (1 = no CFG); unused by Qwen-Image (see true_cfg_scale)."""
    true_cfg_scale: float = 1.0
    """The stock pipelines' ``true_cfg_scale`` (doubles the transformer batch; 1 = off). Qwen-Image: its real CFG
    against the prompt " ", rescaled per token to the conditional norm (pipeline default 4.0). Hunyuan T2V: real
    CFG against the empty prompt on top of the embedded guidance (needs a model trained with prompt dropout)."""
    dtype: str = "auto"
    """Weight dtype of frozen parts (VAE, text encoders): auto | fp32 | bf16 | fp16. auto = bf16 on GPU, fp32 on CPU."""
    lora_rank: int = 0
    """LoRA rank; 0 trains the full transformer."""
    lora_alpha: float = 0.0
    """LoRA alpha (scaling = alpha / rank); 0 means alpha = rank."""
    lora_targets: list[str] = field(default_factory=list)
    """Module names LoRA adapts; empty = the adapter's default attention projections."""
    gradient_checkpointing: bool = False
    """Activation checkpointing of every transformer block during training."""
    first_frame_file: str | None = None
    """Image-to-video: JSON or CSV of (prompt, image path) pairs giving each prompt's first frame."""
    first_frame_scenes: str = "per_prompt"
    """Image-to-video with a source that draws scenes (the shapes world's rendered first frames): ``per_prompt``
    gives a prompt the same first frame in every rollout; ``per_iteration`` draws a fresh scene for each prompt
    every iteration (the samples of a group share it), as the evaluation draws one per index."""
    max_sequence_length: int = 0
    """HunyuanVideo / SkyReels I2V: Llama text tokens per prompt after the template (the stock pipelines'
    ``max_sequence_length``); 0 = their default 256. Padding tokens are masked out but still cost attention: the
    shapes video pipelines were trained with 16 (pretrain.json), which makes every transformer call 2.7x cheaper."""


@dataclass
class SamplerConfig:
    num_steps: int = 16
    """Denoising steps S of a rollout."""
    shift: float = 3.0
    """Flow-matching time shift: sigma = shift*s / (1 + (shift-1)*s). Flow models only."""
    sde_type: str = "dance"
    """Flow SDE: dance | flow_grpo | cps | ode. Diffusion models always use DDIM-SDE."""
    eta: float = 0.3
    """Noise level of the SDE (DanceGRPO eta; Flow-GRPO/CPS 'a'); DDIM eta for diffusion models."""
    init_same_noise: bool = True
    """All G samples of a prompt start from the same initial latent."""
    noise_block: int = 1
    """Low-frequency exploration: SDE noise constant on noise_block x noise_block blocks of the latent grid,
    log-probs in that D / noise_block^2 subspace (fastvideo.grpo.block_noise). 1 = i.i.d. noise. 'dance' SDE only."""
    window_size: int = 0
    """MixGRPO: steps w sampled with the SDE and trained (a sliding window); 0 = every step SDE (DanceGRPO)."""
    window_strategy: str = "progressive"
    """MixGRPO window movement: progressive (l += stride every shift_every iterations) | frozen (l = 0) | random."""
    window_shift_every: int = 25
    """MixGRPO tau: iterations between window moves (progressive strategy)."""
    window_stride: int = 1
    """MixGRPO s: steps the window moves each time (progressive strategy)."""
    ode_solver: str = "euler"
    """Solver of the ODE steps after the window: euler | dpm2 (2nd-order DPM-Solver++, MixGRPO-Flash). Flow models."""
    flash_ratio: float = 1.0
    """MixGRPO-Flash: fraction of the post-window steps kept (0.4 Flash, 0.2 Flash*); 1 = no compression."""
    rollout_guidance_scale: float | None = None
    """Guidance used in rollout and training (e.g. 1.0 = CFG-free training of a CFG model); None = model.guidance_scale."""
    eval_num_steps: int = 0
    """Steps for validation / evaluation sampling (Flow-GRPO trains with fewer); 0 = num_steps."""


@dataclass
class GRPOConfig:
    group_size: int = 12
    """Samples G generated per prompt (the group for advantage normalisation)."""
    clip_range: float = 1e-4
    """PPO clip epsilon on the ratio exp(logp - logp_old)."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to [-adv_clip_max, adv_clip_max]."""
    timestep_fraction: float = 0.6
    """Fraction of the S-1 trainable steps trained per sample: floor((S-1)*fraction), in (0, 1]. The likelihood
    objective (grpo) only: nft/awm/rft train ``forward_timesteps`` re-noised timesteps per sample instead."""
    advantage_scope: str = "group"
    """Normalise rewards within each prompt's group ('group') or over the whole gathered batch ('global')."""
    per_prompt_stat_tracking: bool = False
    """Flow-GRPO: normalise with running per-prompt statistics instead of the current group only."""
    kl_coef: float = 0.0
    """Weight of the closed-form KL to the reference (base) policy; 0 disables it."""
    train_best_of: int = 0
    """Train only the k/2 best and k/2 worst samples of each group by advantage (DanceGRPO video: 8 of 24); 0 = all."""
    objective: str = "grpo"
    """Training objective: grpo (PPO-clipped likelihood ratio of the SDE steps) | nft (DiffusionNFT) | awm (Advantage
    Weighted Matching) | rft (flow-matching loss on the samples with positive advantage). nft/awm/rft train on the
    forward process of each sample's final latent (fastvideo.grpo.forward); roll out with sampler.sde_type ode and
    init_same_noise false."""
    forward_timesteps: int = 0
    """nft/awm/rft: timesteps t (steps of the sampler's schedule) each sample is re-noised to per pass; 0 = the
    objective's published value (nft 9, awm 6, rft 6; steps repeat when it exceeds sampler.num_steps)."""
    train_cfg_free: bool = False
    """nft/awm/rft: the loss trains the conditional branch v_c alone (real CFG scale 1) while the rollouts keep the
    run's classifier-free guidance, as DiffusionNFT trains CFG-free; evaluate the result with and without CFG. Only
    models with real CFG (an unconditional branch: SD, SD3.5, Wan2.1, Qwen-Image, HunyuanVideo's true_cfg_scale,
    SkyReels I2V)."""
    rft_min_reward: float | None = None
    """Train only samples whose reward is >= this (any objective; with rft: rejection fine-tuning on the samples a
    verifier accepts, e.g. 1.0 for the binary verdict). None: no absolute bar."""
    drop_constant_groups: bool = False
    """Flow-GRPO: do not train the samples of groups whose rewards are all equal (no signal, only compute); metric
    groups_dropped."""
    nft_beta: float = 1.0
    """DiffusionNFT beta of the implicit policies v+ = beta v + (1 - beta) v_old, v- = (1 + beta) v_old - beta v
    (1 for GenEval, 0.1 for OCR / multi-reward)."""
    nft_old_decay_rate: float = 0.001
    """DiffusionNFT old policy: theta_old <- d theta_old + (1 - d) theta after each iteration, d = min(rate * optimizer
    steps so far, nft_old_decay_max)."""
    nft_old_decay_max: float = 0.5
    """Cap of the old policy's decay d, in [0, 1)."""


@dataclass
class RewardTermConfig:
    name: str = "brightness"
    """Registry name of the reward (see fastvideo.rewards)."""
    weight: float = 1.0
    """Weight of this reward in the total (or in the advantage sum)."""
    threshold: float | None = None
    """If set, the reward becomes binary: 1 if score > threshold else 0."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the reward (checkpoint paths, conventions...)."""


@dataclass
class RewardsConfig:
    terms: list[RewardTermConfig] = field(default_factory=lambda: [RewardTermConfig()])
    """The rewards and their weights."""
    aggregation: str = "sum"
    """'sum': advantages of the weighted reward sum; 'advantage': weighted sum of per-reward advantages."""
    device: str = "auto"
    """Device the reward models run on (auto = the training device)."""
    nan_policy: str = "skip"
    """A non-finite reward: 'skip' the iteration's update with a warning, or 'error'."""


@dataclass
class DataConfig:
    prompt_file: str = "prompts.txt"
    """Text file with one prompt per line (blank lines skipped, duplicates kept once)."""
    embeddings_dir: str | None = None
    """Prompt-embedding cache written by fastvideo.data.preprocess; None encodes prompts online."""
    validation_prompts: list[str] = field(default_factory=list)
    """Fixed prompts rendered to an image grid every logging.validation_every iterations."""


@dataclass
class TrainConfig:
    max_iterations: int = 200
    """GRPO iterations (rollout + update) to run."""
    max_minutes: float = 0.0
    """Wall-clock budget of this invocation's training loop in minutes (0 = none): the run stops after the
    first iteration that ends past it, then checkpoints and exports as at max_iterations."""
    prompts_per_iteration: int = 1
    """Prompts per rank per iteration (per GPU); each yields group_size samples."""
    rollout_batch_size: int = 0
    """Samples per forward pass during the rollout, per GPU; 0 = all samples of the iteration at once."""
    train_batch_size: int = 1
    """Samples per forward/backward micro-batch during training, per GPU."""
    updates_per_iteration: int = 1
    """Optimizer steps per iteration: the iteration's samples are split into this many equal chunks."""
    passes_per_rollout: int = 1
    """Passes over one rollout's training items, each of updates_per_iteration optimizer steps (GRPO: the PPO clip
    keeps later passes valid; nft/awm/rft draw new timesteps and noise every pass)."""
    lr: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold (DanceGRPO: 1.0; 0.01 in its 8-GPU FLUX recipe)."""
    lr_scheduler: str = "constant_with_warmup"
    """diffusers get_scheduler name."""
    lr_warmup_steps: int = 0
    """Warm-up optimizer steps of the LR schedule."""
    ema_decay: float = 0.0
    """EMA decay of trainable weights; 0 disables EMA."""
    supervised_coef: float = 0.0
    """Weight of a supervised loss on ground-truth data added to every micro-batch of the update (InstructGPT's
    pretraining mix; 0 = off). The loss comes from the caller: ``GRPOTrainer(..., supervised_loss=fn)``; the
    shapes lab supplies the clean-render flow-matching loss (``fastvideo.shapes.clean_renders``)."""
    supervised_batch_size: int = 8
    """Ground-truth examples per micro-batch of the supervised loss (per GPU)."""
    mixed_precision: str = "auto"
    """auto | fp32 | bf16: autocast of the denoiser (auto = bf16 on CUDA, fp32 on CPU)."""
    fsdp: bool = True
    """Shard the denoiser with FSDP2 when more than one rank runs."""
    seed: int = 42
    """Seed of every random draw (noise, timestep subsets, prompt order)."""


@dataclass
class CheckpointConfig:
    every: int = 50
    """Save the full training state every N iterations (0 = only at the end)."""
    keep_last: int = 3
    """Number of most recent checkpoints kept."""
    resume: str = ""
    """'' = start fresh, 'auto' = latest complete checkpoint in output_dir, or a checkpoint path."""
    export_at_end: bool = True
    """Export the trained weights in diffusers format (or LoRA weights) at the end of the run."""


@dataclass
class LoggingConfig:
    log_every: int = 1
    """Write metrics every N iterations."""
    wandb: bool = False
    """Log to Weights & Biases (offline when no API key is configured)."""
    wandb_project: str = "dancegrpo"
    """W&B project name."""
    tensorboard: bool = False
    """Also write TensorBoard event files (scalars, validation grids) to <output_dir>/tensorboard (needs .[log])."""
    validation_every: int = 0
    """Render the validation prompts to an image grid every N iterations (0 = never)."""
    progress_bar: bool = True
    """tqdm progress bar on rank 0."""


@dataclass
class DryRunConfig:
    enabled: bool = False
    """Build every component at real size on fake tensors and run one iteration with memory trackers instead of
    training (``--dry_run``; ``fastvideo.dryrun``): prints the per-GPU memory plan, fails if it does not fit."""
    world_size: int = 1
    """GPUs the plan is for (the FSDP2 shards of a fake process group of this size)."""
    gpu_memory_gb: float = 0.0
    """Memory of one GPU in GiB; 0 = the visible GPU's, or 80 without one."""
    device: str = "cuda"
    """Device type planned for: cuda (bf16 frozen weights and autocast where the config says auto) | cpu."""
    memory: bool = True
    """Run the phases under torch's memory trackers; false: shapes, parameters and plans only (about 3x faster)."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    dry_run: DryRunConfig = field(default_factory=DryRunConfig)
    output_dir: str = "outputs/run"
    """Run directory: metrics, config, checkpoints, exports, images."""
