"""A randomly initialised SD 1.5 checkpoint, made by sd-scripts' own library (run from its folder).

No weights can be downloaded here, and sd-scripts' SD 1.5 shapes are fixed (860 M U-Net
parameters), so tests train on this: the U-Net and VAE from sd-scripts' diffusers configs, a
ViT-L/14 text encoder from the CLIPTextConfig sd-scripts itself builds, saved in the original
Stable Diffusion layout with save_stable_diffusion_checkpoint, in fp16. Seeded: the same file each time.

    cd sd-scripts && python make-random-sd15.py OUT.safetensors
"""
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from library import model_util


def main(out_file):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**model_util.create_unet_diffusers_config(False))
    vae = AutoencoderKL(**model_util.create_vae_diffusers_config())
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-05,
            projection_dim=768,
        )
    )
    model_util.save_stable_diffusion_checkpoint(False, out_file, text_encoder, unet, None, 0, 0, {}, save_dtype=torch.float16, vae=vae)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make-random-sd15.py OUT.safetensors")
    main(sys.argv[1])
