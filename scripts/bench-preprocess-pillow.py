"""The Pillow baselines of `npm run bench:preprocess`: what a plain preprocessing script does.

Each worker process opens an image, applies its EXIF orientation, crops and resizes it to the
square with Lanczos (ImageOps.fit) and saves a PNG. `--draft` first asks the JPEG decoder for a
reduced-size decode (Image.draft), the usual speed-up. Prints {"seconds", "cpuSeconds", "images"}:
the wall time of the processing only, measured around the pool's work (interpreter start
excluded), and the CPU time the worker processes used.
"""

import argparse
import json
import os
import resource
import sys
import time
from multiprocessing import Pool

from PIL import Image, ImageOps


def process(job):
    source, target, size, draft = job
    with Image.open(source) as image:
        if draft:
            image.draft("RGB", (size, size))
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        ImageOps.fit(image, (size, size), Image.LANCZOS).save(target, "PNG")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--draft", action="store_true")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    jobs = [
        (source, os.path.join(args.out, f"{index:05d}.png"), args.size, args.draft)
        for index, source in enumerate(args.files)
    ]
    with Pool(args.workers) as pool:
        # Warm the workers up (imports, first call) so that only image work is timed.
        pool.map(int, range(args.workers))
        started = time.perf_counter()
        pool.map(process, jobs, chunksize=1)
        seconds = time.perf_counter() - started
    # The workers have exited and been waited for: their CPU time is in RUSAGE_CHILDREN.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    json.dump({"seconds": seconds, "cpuSeconds": usage.ru_utime + usage.ru_stime, "images": len(jobs)}, sys.stdout)


if __name__ == "__main__":
    main()
