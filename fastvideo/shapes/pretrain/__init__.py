"""Pretraining of the small text-to-image pipelines shipped for the shapes world.

``python -m fastvideo.shapes.pretrain.images --stage all --output_dir assets/shapes`` trains, on the CPU and
from scratch, a small ``AutoencoderKL``, tiny CLIP/T5 text encoders with tokenizers built offline
from the grammar's vocabulary, a ``FluxTransformer2DModel`` (rectified flow) and a
``UNet2DConditionModel`` (DDPM eps prediction), and saves them as stock diffusers pipeline
directories (``FluxPipeline`` / ``StableDiffusionPipeline``). ``fastvideo.shapes.pretrain.base_eval``
measures their held-out verifier accuracy.

``python -m fastvideo.shapes.pretrain.video --stage all`` does the same for the moving-shapes video world: a
small video autoencoder, Llama-style + CLIP text encoders and a ``HunyuanVideoTransformer3DModel``,
saved as a stock ``HunyuanVideoPipeline`` directory (not trained yet: about 2.5 h on one CPU thread
at 32 px, 9 frames).
"""
