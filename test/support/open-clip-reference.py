"""
Reference CLIP token ids for the TypeScript tokenizer's tests, from open_clip's own tokenizer.py.
open_clip is installed without torch (only the tokenizer is needed), so tokenizer.py is loaded on
its own with a stand-in `torch` module that satisfies its type annotations.

stdin: a JSON list of captions. stdout: a JSON list with, per caption, open_clip's ids (without
start/end tokens), what ftfy.fix_text makes of it, and the caption cleaned the way open_clip
cleans it (ftfy, html.unescape twice, whitespace collapsed, lower case).
"""
import importlib.util
import json
import os
import sys
import types

torch_stub = types.ModuleType("torch")
torch_stub.__getattr__ = lambda name: object  # torch.LongTensor etc. appear only in annotations
sys.modules.setdefault("torch", torch_stub)

package_dir = importlib.util.find_spec("open_clip").submodule_search_locations[0]
spec = importlib.util.spec_from_file_location("open_clip_tokenizer", os.path.join(package_dir, "tokenizer.py"))
tokenizer_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tokenizer_module)
tokenizer = tokenizer_module.SimpleTokenizer()

captions = json.load(sys.stdin)
json.dump(
    [
        {
            "ids": tokenizer.encode(caption),
            "fixed": tokenizer_module.ftfy.fix_text(caption),
            "cleaned": tokenizer_module._clean_lower(caption),
        }
        for caption in captions
    ],
    sys.stdout,
)
