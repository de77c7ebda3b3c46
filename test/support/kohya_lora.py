"""An independent writer of kohya-style LoRA files and tar archives for the tests.

Written against the Python `safetensors` package and numpy, sharing nothing with the TypeScript
writer: module names, shapes, metadata and the sshs_model_hash are produced here the way
sd-scripts' networks/lora.py and train_util do it. Reads a JSON job on stdin:

  {"dir": "...",
   "loras": [{"file": "a.safetensors", "family": "sd15" | "sdxl", "dim": 8, "alpha": 4,
              "dtype": "float16" | "float32", "output_name": "a", "defect": null | "nan" | "inf" |
              "missing-alpha" | "wrong-rank" | "checkpoint" | "sshs-mismatch"}],
   "archives": [{"file": "x.tar.gz", "entries": [{"path": "...", "type": "file" | "dir" |
                 "symlink" | "hardlink", "source": "file in dir (type file)", "target": "..."}]}]}

and prints {"loras": {file: {"sha256": ..., "sha256_after_header": ...}}} on stdout.
"""

import hashlib
import io
import json
import sys
import tarfile

import numpy as np
from safetensors.numpy import save

# (kohya module name, in features, out features, 1x1 conv?) with the real layer sizes.
MODULES = {
    "sd15": [
        ("lora_unet_down_blocks_0_attentions_0_proj_in", 320, 320, True),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320, False),
        ("lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn2_to_k", 768, 640, False),
        ("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj", 1280, 10240, False),
        ("lora_unet_up_blocks_3_attentions_2_proj_out", 320, 320, True),
        ("lora_te_text_model_encoder_layers_0_self_attn_k_proj", 768, 768, False),
        ("lora_te_text_model_encoder_layers_11_mlp_fc1", 768, 3072, False),
    ],
    "sdxl": [
        ("lora_unet_input_blocks_4_1_proj_in", 640, 640, False),
        ("lora_unet_input_blocks_7_1_transformer_blocks_1_attn2_to_v", 2048, 1280, False),
        ("lora_unet_middle_block_1_transformer_blocks_0_ff_net_2", 5120, 1280, False),
        ("lora_unet_output_blocks_2_1_transformer_blocks_9_attn1_to_out_0", 1280, 1280, False),
        ("lora_te1_text_model_encoder_layers_10_self_attn_q_proj", 768, 768, False),
        ("lora_te2_text_model_encoder_layers_31_mlp_fc2", 5120, 1280, False),
    ],
}
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}
ARCHITECTURE = {"sd15": "stable-diffusion-v1/lora", "sdxl": "stable-diffusion-xl-v1-base/lora"}


def after_header_sha256(data: bytes) -> str:
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n:]).hexdigest()


def lora_tensors(spec, rng):
    dtype = np.dtype(spec["dtype"])
    tensors = {}
    for index, (name, fan_in, fan_out, conv) in enumerate(MODULES[spec["family"]]):
        rank = spec["dim"] // 2 if spec.get("defect") == "wrong-rank" and index == 2 else spec["dim"]
        down = rng.normal(0, 1 / np.sqrt(fan_in), (rank, fan_in)).astype(dtype)
        up = rng.normal(0, 0.01, (fan_out, rank)).astype(dtype)
        if conv:
            down, up = down.reshape(rank, fan_in, 1, 1), up.reshape(fan_out, rank, 1, 1)
        tensors[f"{name}.lora_down.weight"] = down
        tensors[f"{name}.lora_up.weight"] = up
        tensors[f"{name}.alpha"] = np.array(spec["alpha"], dtype=dtype)
    first = MODULES[spec["family"]][0][0]
    if spec.get("defect") == "nan":
        tensors[f"{first}.lora_down.weight"].flat[5] = np.nan
    if spec.get("defect") == "inf":
        tensors[f"{first}.lora_up.weight"].flat[3] = np.inf
    if spec.get("defect") == "missing-alpha":
        del tensors[f"{MODULES[spec['family']][-1][0]}.alpha"]
    return tensors


def write_lora(spec, rng):
    family = spec["family"]
    if spec.get("defect") == "checkpoint":
        tensors = {
            "model.diffusion_model.input_blocks.0.0.weight": rng.normal(size=(320, 4, 3, 3)).astype(np.float16),
            "cond_stage_model.transformer.text_model.final_layer_norm.bias": np.zeros(768, np.float16),
            "first_stage_model.decoder.conv_in.bias": np.zeros(512, np.float16),
        }
        return save(tensors, metadata={"format": "pt"})
    tensors = lora_tensors(spec, rng)
    metadata = {
        "ss_output_name": spec["output_name"],
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(spec["dim"]),
        "ss_network_alpha": str(float(spec["alpha"])),
        "ss_base_model_version": BASE_MODEL_VERSION[family],
        "ss_num_epochs": "3",
        "ss_steps": "120",
        "ss_training_started_at": "1714564800.25",
        "ss_tag_frequency": json.dumps({"10_" + spec["output_name"]: {"photo": 12, spec["output_name"]: 12}}),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": ARCHITECTURE[family],
        "modelspec.title": spec["output_name"],
    }
    # sd-scripts hashes the data section of the file it is about to write, then adds the hash.
    data_hash = after_header_sha256(save(tensors, metadata=metadata))
    metadata["sshs_model_hash"] = hashlib.sha256(b"other bytes").hexdigest() if spec.get("defect") == "sshs-mismatch" else data_hash
    return save(tensors, metadata=metadata)


def write_archive(directory, spec):
    with tarfile.open(f"{directory}/{spec['file']}", "w:gz") as archive:
        for entry in spec["entries"]:
            info = tarfile.TarInfo(entry["path"])
            if entry["type"] == "file":
                with open(f"{directory}/{entry['source']}", "rb") as source:
                    content = source.read()
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[entry["type"]]
            info.linkname = entry.get("target", "")
            archive.addfile(info)


def main():
    job = json.load(sys.stdin)
    rng = np.random.default_rng(20240501)
    hashes = {}
    for spec in job.get("loras", []):
        data = write_lora(spec, rng)
        with open(f"{job['dir']}/{spec['file']}", "wb") as out:
            out.write(data)
        hashes[spec["file"]] = {"sha256": hashlib.sha256(data).hexdigest(), "sha256_after_header": after_header_sha256(data)}
    for spec in job.get("archives", []):
        write_archive(job["dir"], spec)
    json.dump({"loras": hashes}, sys.stdout)


if __name__ == "__main__":
    main()
