"""sd-scripts' own bucket choice, for the reference test (run from sd-scripts' folder, in its venv).

Reads {"resolution": N, "step": S, "sizes": [[w, h], ...]} on stdin and prints, per size, what
BucketManager(no_upscale=True).select_bucket returns: {"bucket": [w, h], "resized": [w, h]}, or
{"error": "..."} where sd-scripts itself fails on that size.
"""
import json
import sys

from library.train_util import BucketManager


def main():
    request = json.load(sys.stdin)
    resolution, step = request["resolution"], request["step"]
    manager = BucketManager(True, (resolution, resolution), None, None, step)
    out = []
    for width, height in request["sizes"]:
        try:
            reso, resized, _error = manager.select_bucket(width, height)
            out.append({"bucket": [int(reso[0]), int(reso[1])], "resized": [int(resized[0]), int(resized[1])]})
        except Exception as err:  # sd-scripts' own failure on an extreme size
            out.append({"error": f"{type(err).__name__}: {err}"})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
