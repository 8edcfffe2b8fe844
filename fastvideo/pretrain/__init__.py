"""Pretraining of the small text-to-image pipelines shipped for the shapes world.

``python -m fastvideo.pretrain.shapes --stage all --output_dir assets/shapes`` trains, on the CPU and
from scratch, a small ``AutoencoderKL``, tiny CLIP/T5 text encoders with tokenizers built offline
from the grammar's vocabulary, a ``FluxTransformer2DModel`` (rectified flow) and a
``UNet2DConditionModel`` (DDPM eps prediction), and saves them as stock diffusers pipeline
directories (``FluxPipeline`` / ``StableDiffusionPipeline``). ``fastvideo.pretrain.evaluate``
measures their held-out verifier accuracy.
"""
