"""Schedules: flow sigmas, DDIM timesteps/alphas (checked against the reference scheduler), trained-step subsets."""

import pytest
import torch

from fastvideo.grpo.schedule import (
    ddim_schedule,
    flow_sigmas,
    num_train_steps,
    sample_train_step_indices,
    scaled_linear_alphas_cumprod,
)


def test_flow_sigmas_unshifted_is_uniform():
    sigmas = flow_sigmas(4, 1.0)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (5,)
    torch.testing.assert_close(sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))


def test_flow_sigmas_shift_formula():
    sigmas = flow_sigmas(4, 3.0)
    s = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    torch.testing.assert_close(sigmas, 3 * s / (1 + 2 * s))
    torch.testing.assert_close(sigmas[2], torch.tensor(0.75))  # 1.5 / 2
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    assert torch.all(flow_sigmas(16, 3.0)[1:-1] > flow_sigmas(16, 1.0)[1:-1])


def test_flow_sigmas_rejects_bad_arguments():
    with pytest.raises(ValueError):
        flow_sigmas(0, 1.0)
    with pytest.raises(ValueError):
        flow_sigmas(10, 0.0)


def _reference_scheduler(spacing, steps_offset=1):
    diffusers = pytest.importorskip("diffusers")
    return diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=steps_offset,
        timestep_spacing=spacing,
    )


def test_scaled_linear_alphas_match_reference():
    reference = _reference_scheduler("leading")
    assert torch.equal(scaled_linear_alphas_cumprod(), reference.alphas_cumprod)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_steps", [1, 7, 20, 50, 333])
def test_ddim_schedule_matches_reference_scheduler(spacing, num_steps):
    reference = _reference_scheduler(spacing)
    reference.set_timesteps(num_steps)
    ours = ddim_schedule(reference.alphas_cumprod, num_steps, timestep_spacing=spacing)
    assert ours.timesteps.dtype == torch.int64
    assert torch.equal(ours.timesteps, reference.timesteps)
    for i, t in enumerate(reference.timesteps.tolist()):
        prev_t = t - 1000 // num_steps
        expected_prev = reference.alphas_cumprod[prev_t] if prev_t >= 0 else reference.final_alpha_cumprod
        assert ours.alpha_bar[i] == reference.alphas_cumprod[t]
        assert ours.alpha_bar_prev[i] == expected_prev


def test_ddim_schedule_sd_values_by_hand():
    alphas = scaled_linear_alphas_cumprod()
    schedule = ddim_schedule(alphas, 50)
    assert schedule.timesteps[0] == 981 and schedule.timesteps[-1] == 1
    assert schedule.alpha_bar_prev[0] == alphas[961]
    assert schedule.alpha_bar_prev[-1] == alphas[0]  # "set_alpha_to_one = False"
    assert ddim_schedule(alphas, 50, final_alpha_cumprod=1.0).alpha_bar_prev[-1] == 1.0


def test_ddim_schedule_rejects_bad_arguments():
    alphas = scaled_linear_alphas_cumprod()
    with pytest.raises(ValueError):
        ddim_schedule(alphas, 0)
    with pytest.raises(ValueError):
        ddim_schedule(alphas, 1001)
    with pytest.raises(ValueError):
        ddim_schedule(alphas, 1000)  # leading + offset 1 would need timestep 1000
    with pytest.raises(ValueError):
        ddim_schedule(alphas, 10, timestep_spacing="karras")


def test_num_train_steps():
    assert num_train_steps(16, 0.6) == 9  # floor(15 * 0.6)
    assert num_train_steps(50, 0.6) == 29  # floor(49 * 0.6) = floor(29.4)
    assert num_train_steps(101, 0.57) == 57  # 100 * 0.57 = 56.99999... in floats
    assert num_train_steps(3, 0.1) == 1  # at least one
    assert num_train_steps(16, 1.0) == 15
    for bad in [(1, 0.5), (10, 0.0), (10, 1.5)]:
        with pytest.raises(ValueError):
            num_train_steps(*bad)


def test_sample_train_step_indices():
    indices = sample_train_step_indices(16, 0.6, torch.Generator().manual_seed(0))
    assert indices.dtype == torch.int64 and indices.shape == (9,)
    assert torch.all(indices[1:] > indices[:-1])  # sorted, distinct
    assert indices.min() >= 0 and indices.max() <= 14  # the last transition (15) is never trained
    again = sample_train_step_indices(16, 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(indices, again)
    draws = [sample_train_step_indices(16, 0.6, torch.Generator().manual_seed(s)) for s in range(200)]
    assert len({tuple(d.tolist()) for d in draws}) > 150
    counts = torch.bincount(torch.cat(draws), minlength=15)
    assert counts.shape == (15,) and torch.all(counts > 0)
    assert torch.equal(sample_train_step_indices(16, 1.0, torch.Generator()), torch.arange(15))
