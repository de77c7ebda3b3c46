#!/usr/bin/env python3
"""Kohya-SS LoRA training entrypoint: SageMaker's training-container contract mapped to sd-scripts.

The SageMaker image runs it as its ENTRYPOINT (SageMaker appends the argument "train"); the
pipeline's local trainer runs the same file on the worker host with its job folder as the ML root:

  entrypoint.py [train] [--ml-root DIR] [--channel NAME=DIR ...]

Standard library only.

Reads (below the ML root, /opt/ml unless --ml-root says otherwise):
  input/config/hyperparameters.json  sd-scripts options as strings ("32", "true", "0.0001",
                                     "512,512") plus lora_family (sd15 | sdxl),
                                     lora_string_options (the options whose values are strings),
                                     lora_model_file and lora_resume
  input/data/dataset/                the <repeats>_<concept>/ folders (or --channel dataset=DIR)
  input/data/model/                  the base checkpoint, when it comes from S3 (or --channel model=DIR)
Writes:
  output/data/config.toml            the sd-scripts config with the real paths
  checkpoints/progress.json          step / total, epoch, average loss, ETA, NaN flag, while training
  model/                             the final <output_name>.safetensors and the per-epoch files
  output/failure                     one line saying why, when it exits non-zero

With LORA_TOKENIZER_CACHE_DIR (the image sets it), sd-scripts loads its CLIP tokenizers from there
(`tokenizer_cache_dir`) instead of the Hugging Face hub, so a job needs no internet.

Runs `accelerate launch <sd-scripts>/(sdxl_)train_network.py --config_file <config.toml>`
(LORA_KOHYA_COMMAND, a JSON array, replaces everything before --config_file; LORA_SD_SCRIPTS
says where sd-scripts is). sd-scripts exits 0 when it finds no images ("No data found"): that is
a failure here. With lora_resume it saves its state every epoch under checkpoints/ and resumes
from the newest one, so a restarted managed-spot job keeps the epochs it finished. SIGTERM (a
stop) is passed on to the whole process group, which sd-scripts and accelerate's workers share.
"""

import argparse
import codecs
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from datetime import datetime, timezone

SCRIPTS = {"sd15": "train_network.py", "sdxl": "sdxl_train_network.py"}
# Keys this program decides; a hyperparameter setting them would be silently wrong.
MANAGED_OPTIONS = ("train_data_dir", "output_dir", "config_file", "dataset_config", "save_state", "save_last_n_epochs_state", "resume")
MODEL_EXTENSIONS = (".safetensors", ".ckpt")
MAX_REASON_CHARS = 1000  # SageMaker's FailureReason holds 1024
STATE_DIR = re.compile(r"^(?P<name>.+)-(?P<epoch>\d{6})-state$")

# What sd-scripts prints (the same patterns as lib/kohya/progress.ts, which reads it locally):
# `steps:  12%|█▏        | 240/2000 [00:10<01:10, 3.2it/s, avr_loss=0.0871]` redrawn with \r,
# `epoch 1/10`, and the totals before training starts.
STEPS_LINE = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)(?:\s*\[([^\]]*)\])?")
AVERAGE_LOSS = re.compile(r"avr_loss=([^,\]\s]+)")
REMAINING = re.compile(r"<(?:(\d+):)?(\d+):(\d+)(?=[,\]\s]|$)")
EPOCH_LINE = re.compile(r"(?:^|\s)epoch (\d+)/(\d+)(?=\s|$)")
TOTAL_EPOCHS = re.compile(r"num epochs / [^:]*:\s*(\d+)")
TOTAL_STEPS = re.compile(r"total optimization steps / [^:]*:\s*(\d+)")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A Python exception's last traceback line: `ImportError: No xformers`, `torch.OutOfMemoryError: …`.
ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)(?::|$)")
# What `accelerate launch` raises when its child fails: it hides the child's own error, printed before it.
LAUNCHER_ERROR = "subprocess.CalledProcessError:"
# sd-scripts' rich logger wraps at 80 columns when its output is not a terminal, and pads every
# line to the width: wide enough for its messages, narrow enough to keep the log small.
LOG_COLUMNS = "320"


class Failure(Exception):
    """A reason to stop, worded for the user: it becomes the job's FailureReason."""


class Stopped(Failure):
    """The job was asked to stop; exits like a process ended by SIGTERM."""


class Paths:
    def __init__(self, root, channels):
        self.root = root
        self.channels = channels
        self.hyperparameters = os.path.join(self.root, "input", "config", "hyperparameters.json")
        self.model = os.path.join(self.root, "model")
        self.checkpoints = os.path.join(self.root, "checkpoints")
        self.progress = os.path.join(self.checkpoints, "progress.json")
        self.failure = os.path.join(self.root, "output", "failure")
        self.config = os.path.join(self.root, "output", "data", "config.toml")

    def channel(self, name):
        return self.channels.get(name) or os.path.join(self.root, "input", "data", name)


def read_hyperparameters(path):
    """(family, options, model_file, resume): options typed as sd-scripts must read them from TOML."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raise Failure(f"{path} is missing: the job was started without hyperparameters")
    except ValueError as err:
        raise Failure(f"{path} is not JSON: {err}")
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise Failure(f"{path} must map names to strings, as SageMaker writes it")
    family = raw.pop("lora_family", "")
    if family not in SCRIPTS:
        raise Failure(f"hyperparameter lora_family must be one of {', '.join(SCRIPTS)}, got {family!r}")
    string_options = {key for key in raw.pop("lora_string_options", "").split(",") if key}
    model_file = raw.pop("lora_model_file", None)
    resume = raw.pop("lora_resume", "false") == "true"
    managed = [key for key in MANAGED_OPTIONS if key in raw]
    if managed:
        raise Failure(f"hyperparameters set {', '.join(managed)}, which the entrypoint sets itself")
    options = {}
    for key, text in raw.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise Failure(f"hyperparameter {key!r} is not an sd-scripts option name")
        if key in string_options:
            options[key] = text
            continue
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not (isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value))):
            raise Failure(f"hyperparameter {key}={text!r}: expected a number or true/false (string options are listed in lora_string_options)")
        options[key] = value
    return family, options, model_file, resume


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # floats keep their point or exponent: 16.0, 0.0001, 1e-05
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def write_file_atomically(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temp, path)


def model_path(channel_dir, model_file):
    """The checkpoint in the model channel: the named file, its only model file, or a Diffusers folder."""
    if model_file:
        path = os.path.join(channel_dir, model_file)
        if not os.path.isfile(path):
            raise Failure(f"the model channel has no {model_file} (found: {', '.join(sorted(os.listdir(channel_dir))) or 'nothing'})")
        return path
    if os.path.isfile(os.path.join(channel_dir, "model_index.json")):
        return channel_dir
    candidates = sorted(name for name in os.listdir(channel_dir) if name.lower().endswith(MODEL_EXTENSIONS))
    if len(candidates) != 1:
        raise Failure(f"the model channel must hold exactly one {' or '.join(MODEL_EXTENSIONS)} file or a Diffusers folder, found {candidates or 'none'}")
    return os.path.join(channel_dir, candidates[0])


def newest_state(directory, output_name):
    """The newest `<output_name>-<epoch>-state` folder sd-scripts saved, if any."""
    if not os.path.isdir(directory):
        return None
    states = []
    for name in os.listdir(directory):
        match = STATE_DIR.match(name)
        if match and match.group("name") == output_name and os.path.isdir(os.path.join(directory, name)):
            states.append((int(match.group("epoch")), name))
    return os.path.join(directory, max(states)[1]) if states else None


def kohya_command(env, family, options, config_path):
    configured = env.get("LORA_KOHYA_COMMAND")
    if configured:
        try:
            command = json.loads(configured)
        except ValueError:
            command = None
        if not (isinstance(command, list) and command and all(isinstance(part, str) and part for part in command)):
            raise Failure(f"LORA_KOHYA_COMMAND must be a JSON array of strings, got {configured!r}")
    else:
        script = os.path.join(env.get("LORA_SD_SCRIPTS") or "/opt/sd-scripts", SCRIPTS[family])
        command = ["accelerate", "launch", "--num_processes", "1", "--num_machines", "1", "--num_cpu_threads_per_process", "1",
                   "--dynamo_backend", "no", "--mixed_precision", str(options.get("mixed_precision", "no")), script]
    return command + ["--config_file", config_path]


class ProgressTracker:
    """Reads sd-scripts' output line by line and keeps the progress that progress.json reports.

    Resumed from the state saved after epoch `resumed_epochs`, sd-scripts skips those epochs and its
    step bar counts from 0 again (its total stays the whole run's): the steps of the skipped epochs
    are added back, so progress ends at total/total."""

    def __init__(self, resumed_epochs=0):
        self.resumed_epochs = resumed_epochs
        self.lock = threading.Lock()
        self.progress = {}
        self.no_data_found = False
        self.last_lines = {}
        self.error_line = None
        self.changed = False

    @property
    def last_line(self):
        """The likely reason of a crash: the last exception line (the trainer's own, not accelerate's
        wrapper around it), else the last line on stderr (tracebacks go there), else on stdout."""
        return self.error_line or self.last_lines.get("stderr") or self.last_lines.get("stdout")

    def read_line(self, raw, stream):
        line = raw.strip()
        if not line:
            return
        with self.lock:
            self.last_lines[stream] = line
            if ERROR_LINE.match(line) and not (line.startswith(LAUNCHER_ERROR) and self.error_line):
                self.error_line = line
            # Checked on every line: the last progress bar redraw can share its line with it.
            if "No data found" in line:
                self.no_data_found = True
            progress = self.progress
            steps = STEPS_LINE.search(line)
            if steps:
                progress["step"], progress["totalSteps"] = int(steps.group(1)), int(steps.group(2))
                if self.resumed_epochs and progress.get("totalEpochs"):
                    done_before = self.resumed_epochs * progress["totalSteps"] // progress["totalEpochs"]
                    progress["step"] = min(progress["totalSteps"], progress["step"] + done_before)
                bracket = steps.group(3) or ""
                remaining = REMAINING.search(bracket)
                if remaining:
                    progress["etaSeconds"] = int(remaining.group(1) or 0) * 3600 + int(remaining.group(2)) * 60 + int(remaining.group(3))
                else:
                    progress.pop("etaSeconds", None)
                loss = AVERAGE_LOSS.search(bracket)
                # Sticky: once the average is NaN the weights are too, even if a later line looks fine.
                if loss and not progress.get("lossIsNaN"):
                    try:
                        value = float(loss.group(1))
                    except ValueError:
                        value = math.nan
                    if math.isfinite(value):
                        progress["loss"] = value
                    else:
                        progress["lossIsNaN"] = True
                        progress.pop("loss", None)
                self.changed = True
                return
            epoch = EPOCH_LINE.search(line)
            if epoch:
                progress["epoch"], progress["totalEpochs"] = int(epoch.group(1)), int(epoch.group(2))
                self.changed = True
                return
            total_epochs = TOTAL_EPOCHS.search(line)
            if total_epochs:
                progress["totalEpochs"] = int(total_epochs.group(1))
                self.changed = True
            total_steps = TOTAL_STEPS.search(line)
            if total_steps:
                progress["totalSteps"] = int(total_steps.group(1))
                self.changed = True

    def write(self, path):
        with self.lock:
            document = dict(self.progress, updatedAt=datetime.now(timezone.utc).isoformat())
            self.changed = False
        write_file_atomically(path, json.dumps(document, sort_keys=True) + "\n")


def pump(stream, source, sink, tracker):
    """Copies one of the trainer's streams to ours while the tracker reads it (tqdm redraws with \\r)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    while True:
        chunk = os.read(source.fileno(), 65536)
        if not chunk:
            break
        sink.write(chunk)
        sink.flush()
        pieces = LINE_BREAK.split(tail + decoder.decode(chunk))
        tail = pieces.pop()
        for line in pieces:
            tracker.read_line(line, stream)
    tracker.read_line(tail + decoder.decode(b"", final=True), stream)


class Stop:
    """SIGTERM (SageMaker's StopTrainingJob, the local supervisor's stop) reaches the trainer too."""

    def __init__(self):
        self.requested = False
        self.child = None

    def handle(self, signum, _frame):
        if self.requested:
            return  # our own signal, echoed back by killpg below
        self.requested = True
        print(f"entrypoint: received {signal.Signals(signum).name}, stopping the trainer", file=sys.stderr, flush=True)
        try:
            if os.getpgrp() == os.getpid():
                # We lead the group (PID 1 in the container, or started detached): it holds
                # accelerate and every worker it spawned.
                os.killpg(0, signal.SIGTERM)
            elif self.child is not None:
                self.child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass


def train(paths, env):
    if os.path.exists(paths.failure):
        os.remove(paths.failure)
    family, options, model_file, resume = read_hyperparameters(paths.hyperparameters)
    output_name = options.get("output_name")
    if not isinstance(output_name, str) or not output_name:
        raise Failure("hyperparameter output_name is required: the LoRA's file name")

    dataset = paths.channel("dataset")
    if not os.path.isdir(dataset):
        raise Failure(f"the dataset channel {dataset} is missing: the job needs the <repeats>_<concept>/ folders there")
    options["train_data_dir"] = dataset
    model_channel = paths.channel("model")
    if os.path.isdir(model_channel):
        options["pretrained_model_name_or_path"] = model_path(model_channel, model_file)
    elif not options.get("pretrained_model_name_or_path"):
        raise Failure("no base model: neither a model channel nor the pretrained_model_name_or_path hyperparameter")

    # With resume, sd-scripts writes into checkpoints/ (synced to S3), so a restarted job finds its state.
    output_dir = os.path.join(paths.checkpoints, "output") if resume else paths.model
    options["output_dir"] = output_dir
    resumed_epochs = 0
    if resume:
        options["save_state"] = True
        options["save_last_n_epochs_state"] = 1
        state = newest_state(output_dir, output_name)
        if state:
            options["resume"] = state
            resumed_epochs = int(STATE_DIR.match(os.path.basename(state)).group("epoch"))
            print(f"entrypoint: resuming from {state}", file=sys.stderr, flush=True)
    # The image carries the CLIP tokenizers (LORA_TOKENIZER_CACHE_DIR): no model hub at run time.
    tokenizers = env.get("LORA_TOKENIZER_CACHE_DIR")
    if tokenizers and "tokenizer_cache_dir" not in options:
        options["tokenizer_cache_dir"] = tokenizers
    for directory in (output_dir, paths.model, paths.checkpoints):
        os.makedirs(directory, exist_ok=True)
    write_file_atomically(paths.config, "".join(f"{key} = {toml_value(value)}\n" for key, value in options.items()))

    command = kohya_command(env, family, options, paths.config)
    print(f"entrypoint: $ {' '.join(command)}", file=sys.stderr, flush=True)
    stop = Stop()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    tracker = ProgressTracker(resumed_epochs)
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=dict(env, LORA_FAMILY=family, PYTHONUNBUFFERED="1", COLUMNS=env.get("COLUMNS") or LOG_COLUMNS))
    except OSError as err:
        raise Failure(f"could not start {command[0]}: {err.strerror or err}")
    stop.child = child
    pumps = [threading.Thread(target=pump, args=(stream, source, sink, tracker), daemon=True)
             for stream, source, sink in (("stdout", child.stdout, sys.stdout.buffer), ("stderr", child.stderr, sys.stderr.buffer))]
    for thread in pumps:
        thread.start()
    interval = float(env.get("LORA_PROGRESS_INTERVAL_SECONDS") or 5)
    while True:
        try:
            code = child.wait(timeout=interval)
            break
        except subprocess.TimeoutExpired:
            if tracker.changed:
                tracker.write(paths.progress)
    for thread in pumps:
        # A worker process that outlived the trainer may hold the pipe open: do not wait on it forever.
        thread.join(timeout=10)
    tracker.write(paths.progress)

    if stop.requested:
        raise Stopped("stopped: the job received SIGTERM before training finished")
    if tracker.no_data_found:
        raise Failure(f"No data found: sd-scripts found no images in <repeats>_<name>/ folders under {dataset}")
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise Failure(f"sd-scripts {how}: {tracker.last_line or 'no output'}")
    final = os.path.join(output_dir, output_name + ".safetensors")
    if not os.path.isfile(final):
        raise Failure(f"sd-scripts exited 0 but wrote no {output_name}.safetensors in {output_dir}")
    if output_dir != paths.model:
        for name in sorted(os.listdir(output_dir)):
            if name.startswith(output_name) and name.endswith(".safetensors"):
                shutil.copy2(os.path.join(output_dir, name), os.path.join(paths.model, name))


def channel_argument(text):
    name, sep, directory = text.partition("=")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_-]*", name) or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, directory


def main(argv):
    parser = argparse.ArgumentParser(description="Train a Kohya-SS LoRA from SageMaker's /opt/ml layout.")
    parser.add_argument("mode", nargs="?", choices=["train"], help="what SageMaker passes; training is all this does")
    parser.add_argument("--ml-root", default="/opt/ml", help="the ML root instead of /opt/ml")
    parser.add_argument("--channel", type=channel_argument, action="append", default=[], metavar="NAME=DIR",
                        help="an input channel's directory instead of <ml-root>/input/data/NAME")
    args = parser.parse_args(argv)
    paths = Paths(args.ml_root, dict(args.channel))
    try:
        train(paths, dict(os.environ))
        return 0
    except Failure as failure:
        reason = str(failure)
        code = 128 + signal.SIGTERM if isinstance(failure, Stopped) else 1
    except Exception as err:  # a bug here must still leave the job a reason
        traceback.print_exc()
        reason, code = f"entrypoint error: {type(err).__name__}: {err}", 1
    reason = " ".join(reason.split())[:MAX_REASON_CHARS]
    print(f"entrypoint: failed: {reason}", file=sys.stderr, flush=True)
    write_file_atomically(paths.failure, reason + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
