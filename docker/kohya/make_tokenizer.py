"""Builds the CLIP tokenizers sd-scripts loads, offline, from open_clip's BPE merges.

sd-scripts asks the Hugging Face hub for "openai/clip-vit-large-patch14" (SD 1.5, SDXL's first
encoder) and "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k" (SDXL's second); with `tokenizer_cache_dir`
it loads `<dir>/<id with / as _>` instead. Both use the same byte-level BPE that open_clip ships
(bpe_simple_vocab_16e6.txt.gz): 256 byte symbols, the same with "</w>", the merges joined, then the
two special tokens, 49408 in all. They differ only in padding ("<|endoftext|>" vs "!").

    python make_tokenizer.py OUT_DIR   # writes OUT_DIR/openai_clip-vit-large-patch14/ and OUT_DIR/laion_.../
"""
import gzip
import importlib.util
import json
import os
import sys
import tempfile

from transformers import CLIPTokenizer

TOKENIZERS = {
    "openai_clip-vit-large-patch14": "<|endoftext|>",
    "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k": "!",
}
VOCAB_SIZE = 49408


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters, as CLIP uses it."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(code) for code in codes]))


def merges_file():
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_tokenizer.py: open_clip is not installed (pip install --no-deps open-clip-torch)")
    return os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")


def main(out_dir):
    lines = gzip.open(merges_file()).read().decode("utf-8").split("\n")
    # CLIP keeps the first 49152 - 256 - 2 merges (the file holds more).
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    with tempfile.TemporaryDirectory() as work:
        vocab_file = os.path.join(work, "vocab.json")
        merges_path = os.path.join(work, "merges.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            json.dump({token: index for index, token in enumerate(vocab)}, f, ensure_ascii=False)
        with open(merges_path, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(" ".join(merge) for merge in merges) + "\n")
        for name, pad in TOKENIZERS.items():
            tokenizer = CLIPTokenizer(vocab_file, merges_path, pad_token=pad, model_max_length=77)
            tokenizer.save_pretrained(os.path.join(out_dir, name))
    reference = CLIPTokenizer.from_pretrained(os.path.join(out_dir, "openai_clip-vit-large-patch14"))
    ids = reference("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407], ids


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tokenizer.py OUT_DIR")
    main(sys.argv[1])
