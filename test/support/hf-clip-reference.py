"""
Reference CLIP token ids for the TypeScript tokenizer's tests: transformers' (slow) CLIPTokenizer,
which sd-scripts truncates captions with, built offline from open_clip's BPE merges exactly as the
Kohya image builds it (docker/kohya/make_tokenizer.py), with ftfy.

stdin: a JSON list of captions. stdout: a JSON list with, per caption, the ids (without start/end
tokens) and what ftfy.fix_text makes of it.
"""
import importlib.util
import json
import os
import sys
import tempfile

import ftfy
from transformers import CLIPTokenizer
from transformers.utils import logging

logging.set_verbosity_error()  # "sequence length is longer than the model's maximum": expected here

maker_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docker", "kohya", "make_tokenizer.py")
spec = importlib.util.spec_from_file_location("make_tokenizer", maker_path)
make_tokenizer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_tokenizer)

with tempfile.TemporaryDirectory() as folder:
    make_tokenizer.main(folder)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, "openai_clip-vit-large-patch14"))

captions = json.load(sys.stdin)
json.dump(
    [{"ids": tokenizer(caption, add_special_tokens=False)["input_ids"], "fixed": ftfy.fix_text(caption)} for caption in captions],
    sys.stdout,
)
