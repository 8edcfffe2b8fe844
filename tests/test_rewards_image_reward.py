"""ImageReward port: the published key layout and a from-scratch reference forward.

``published_keys`` lists the keys of ImageReward.pt as written by THUDM/ImageReward's modules
(ImageReward.py: blip = BLIP_Pretrain, mlp = MLP; BLIP/vit.py: timm-style ViT; BLIP/med.py:
BertModel with cross-attention, no pooler), independently of our mapping rules.
``reference_score`` recomputes the score from those published tensors with plain torch ops,
following vit.py / med.py / ImageReward.score line by line.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from fastvideo.rewards import RewardWeightsError, build_reward, tiny
from fastvideo.rewards.image_reward import (
    IMAGE_REWARD_MEAN,
    IMAGE_REWARD_STD,
    load_image_reward_model,
    ours_to_published,
    published_to_ours,
)
from fastvideo.rewards.preprocess import preprocess_images

pytestmark = pytest.mark.slow  # the module fixture imports transformers' BLIP (several seconds)

WB = ("weight", "bias")


def published_keys(vision_layers: int, text_layers: int) -> set[str]:
    keys = {"blip.visual_encoder.cls_token", "blip.visual_encoder.pos_embed"}
    keys |= {f"blip.visual_encoder.{m}.{p}" for m in ("patch_embed.proj", "norm") for p in WB}
    for i in range(vision_layers):
        for module in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys |= {f"blip.visual_encoder.blocks.{i}.{module}.{p}" for p in WB}
    text = "blip.text_encoder"
    keys |= {
        f"{text}.embeddings.position_ids",
        f"{text}.embeddings.word_embeddings.weight",
        f"{text}.embeddings.position_embeddings.weight",
    }
    keys |= {f"{text}.embeddings.LayerNorm.{p}" for p in WB}
    for i in range(text_layers):
        for attention in ("attention", "crossattention"):
            for module in ("self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"):
                keys |= {f"{text}.encoder.layer.{i}.{attention}.{module}.{p}" for p in WB}
        for module in ("intermediate.dense", "output.dense", "output.LayerNorm"):
            keys |= {f"{text}.encoder.layer.{i}.{module}.{p}" for p in WB}
    keys |= {f"blip.{proj}.{p}" for proj in ("vision_proj", "text_proj") for p in WB}
    keys |= {f"mlp.layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in WB}
    return keys


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    return tiny.write_tiny_image_reward(tmp_path_factory.mktemp("image_reward"))


@pytest.fixture(scope="module")
def published(files) -> dict[str, torch.Tensor]:
    return torch.load(files["checkpoint"], weights_only=True)


def test_written_checkpoint_has_exactly_the_published_layout(published):
    assert set(published) == published_keys(vision_layers=2, text_layers=2)


def test_key_mapping_is_a_bijection_on_the_published_layout(files, published):
    model = load_image_reward_model(files["checkpoint"], files["med_config"], vision_heads=2)
    ours = set(model.state_dict())
    ignored = {key for key in published if published_to_ours(key) not in ours}
    assert ignored == {
        "blip.text_encoder.embeddings.position_ids",
        "blip.vision_proj.weight",
        "blip.vision_proj.bias",
        "blip.text_proj.weight",
        "blip.text_proj.bias",
    }
    mapped = [published_to_ours(key) for key in published if key not in ignored]
    assert len(mapped) == len(set(mapped)) and set(mapped) == ours  # one-to-one onto our weights
    assert all(published_to_ours(ours_to_published(key)) == key for key in ours)


def test_loader_loads_every_weight_without_warnings(files, published, caplog):
    with caplog.at_level(logging.WARNING):
        model = load_image_reward_model(files["checkpoint"], files["med_config"], vision_heads=2)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, published[ours_to_published(key)], atol=0, rtol=0)


def test_checkpoint_missing_a_weight_is_an_error(tmp_path, files, published):
    partial = {k: v for k, v in published.items() if "crossattention" not in k}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(RewardWeightsError, match="lacks"):
        load_image_reward_model(tmp_path / "partial.pt", files["med_config"], vision_heads=2)


def _layer_norm(x, w, prefix):
    return F.layer_norm(x, x.shape[-1:], w[f"{prefix}.weight"], w[f"{prefix}.bias"], eps=_layer_norm.eps)


def _linear(x, w, prefix):
    return F.linear(x, w[f"{prefix}.weight"], w[f"{prefix}.bias"])


def _attention(query, key, value, heads, additive_mask=None):
    (b, n, d), m = query.shape, key.shape[1]
    q, k, v = (t.reshape(b, -1, heads, d // heads).transpose(1, 2) for t in (query, key, value))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    if additive_mask is not None:
        scores = scores + additive_mask
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d) if m else None


def reference_vit(pixels, w, layers, heads):
    """BLIP vit.py VisionTransformer.forward with published tensors."""
    p = "blip.visual_encoder"
    x = (
        F.conv2d(
            pixels,
            w[f"{p}.patch_embed.proj.weight"],
            w[f"{p}.patch_embed.proj.bias"],
            stride=w[f"{p}.patch_embed.proj.weight"].shape[-1],
        )
        .flatten(2)
        .transpose(1, 2)
    )
    x = torch.cat([w[f"{p}.cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + w[f"{p}.pos_embed"]
    _layer_norm.eps = 1e-6
    for i in range(layers):
        block = f"{p}.blocks.{i}"
        q, k, v = _linear(_layer_norm(x, w, f"{block}.norm1"), w, f"{block}.attn.qkv").chunk(3, dim=-1)
        x = x + _linear(_attention(q, k, v, heads), w, f"{block}.attn.proj")
        hidden = F.gelu(_linear(_layer_norm(x, w, f"{block}.norm2"), w, f"{block}.mlp.fc1"))
        x = x + _linear(hidden, w, f"{block}.mlp.fc2")
    return _layer_norm(x, w, f"{p}.norm")


def reference_text(input_ids, attention_mask, image_embeds, w, layers, heads):
    """BLIP med.py BertModel.forward (mode 'multimodal', is_decoder False) with published tensors."""
    p = "blip.text_encoder"
    _layer_norm.eps = 1e-12
    positions = torch.arange(input_ids.shape[1])
    x = F.embedding(input_ids, w[f"{p}.embeddings.word_embeddings.weight"])
    x = _layer_norm(
        x + w[f"{p}.embeddings.position_embeddings.weight"][positions], w, f"{p}.embeddings.LayerNorm"
    )
    self_mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
    for i in range(layers):
        layer = f"{p}.encoder.layer.{i}"
        for name, source, mask in (("attention", None, self_mask), ("crossattention", image_embeds, None)):
            keys = x if source is None else source
            context = _attention(
                _linear(x, w, f"{layer}.{name}.self.query"),
                _linear(keys, w, f"{layer}.{name}.self.key"),
                _linear(keys, w, f"{layer}.{name}.self.value"),
                heads,
                mask,
            )
            x = _layer_norm(
                _linear(context, w, f"{layer}.{name}.output.dense") + x, w, f"{layer}.{name}.output.LayerNorm"
            )
        hidden = F.gelu(_linear(x, w, f"{layer}.intermediate.dense"))
        x = _layer_norm(_linear(hidden, w, f"{layer}.output.dense") + x, w, f"{layer}.output.LayerNorm")
    return x


def reference_score(pixels, input_ids, attention_mask, w, med):
    image_embeds = reference_vit(pixels, w, layers=2, heads=2)
    text = reference_text(
        input_ids, attention_mask, image_embeds, w, med["num_hidden_layers"], med["num_attention_heads"]
    )
    features = text[:, 0]
    for index in (0, 2, 4, 6, 7):  # Linear layers; Dropouts in between, no activations
        features = _linear(features, w, f"mlp.layers.{index}")
    return (features.squeeze(-1) - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD


def test_scores_match_a_from_scratch_reference_of_the_published_model(files, published):
    reward = build_reward("image_reward", **files)
    images = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    prompts = ["a red circle", "photo of the dog on a blue square", "cat"]
    tokens = reward.tokenizer(
        prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
    )
    assert (
        tokens["input_ids"][0, 0] == reward.tokenizer.cls_token_id and tokens["attention_mask"][2].sum() < 35
    )
    med = json.loads(open(files["med_config"]).read())
    expected = reference_score(
        preprocess_images(images, 32), tokens["input_ids"], tokens["attention_mask"], published, med
    )
    torch.testing.assert_close(reward(images, prompts), expected, atol=1e-6, rtol=0)
    assert reward.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [
        len(reward.tokenizer) - 2,
        len(reward.tokenizer) - 1,
    ]
