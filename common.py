"""
Plumbing shared by every script, kept out of the method's way: settings from the command
line, the device, data parallel, checkpoints, a run's output folder, its metrics log and
progress lines. Imports model.py and data/ and nothing after them.

Every script keeps its knobs in one `defaults` dict at the top, one per line with a
comment, and the values each may take in a `limits` dict beside it:

    defaults = dict(lr=2e-3,           # peak learning rate (AdamW)
                    loss="sigmoid")    # sigmoid (DPO) | hinge (SLiC) | ipo
    limits = dict(lr="(0, inf)", loss=("sigmoid", "hinge", "ipo"))
    cfg = parse_flags(defaults, argv, __file__, limits)   # cfg.lr, cfg.loss; --help lists them
"""
import ast
import contextlib
import errno
import json
import math
import os
import pickle
import re
import sys
import textwrap
import time
from dataclasses import asdict

import torch

from data.task import prompt_start
from model import GPT, GPTConfig, check_vocab


# -----------------------------------------------------------------------------
# settings

def parse_flags(defaults, argv=None, script=None, limits=None):
    """--name=value or --name value (a bare --name sets a bool to True). Each value takes
    its default's type; a default of None accepts anything. Unknown names, and values
    outside `limits`, are errors that say what is allowed. Prints the resolved settings
    and returns them as a namespace; `cfg.given` holds the names set on the command line.
    script: the file whose docstring and settings comments --help prints."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg, given = dict(defaults), set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(usage(defaults, script, limits))
            sys.exit(0)
        if not arg.startswith("--"):
            sys.exit(f"error: unexpected argument {arg!r}; settings look like --name=value "
                     "(--help lists them)")
        name, eq, value = arg[2:].partition("=")
        if name not in cfg:
            sys.exit(f"error: unknown setting --{name}; known: "
                     + ", ".join("--" + k for k in defaults))
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if isinstance(defaults[name], bool) and (nxt is None or nxt.startswith("--")):
                value = "true"
            elif nxt is None:
                sys.exit(f"error: --{name} needs a value")
            else:
                value, i = nxt, i + 1
        cfg[name] = _convert(name, value, defaults[name])
        given.add(name)
        i += 1
    for name, allowed in (limits or {}).items():
        problem = _outside(cfg[name], allowed)
        if problem:
            comment = setting_comments(script).get(name)
            sys.exit(f"error: --{name}={cfg[name]}: {problem}"
                     + (f" ({comment})" if comment else ""))
    print("settings: " + " ".join(f"{k}={v}" for k, v in cfg.items()))
    out = _Namespace(cfg)
    out.given = given
    return out


class _Namespace(dict):
    __getattr__ = dict.__getitem__


def _convert(name, value, default):
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        sys.exit(f"error: --{name}={value!r}: expected a {type(default).__name__}")
    return value if default is not None or value.lower() != "none" else None


def _outside(value, allowed):
    """What is wrong with value under `allowed`, or None. allowed: a tuple of choices, or
    an interval such as "[0, 1]" or "(0, inf)" (square brackets include the end)."""
    if isinstance(allowed, tuple):
        return None if value in allowed else "choose one of " + ", ".join(map(str, allowed))
    lo, hi = (float(x) for x in allowed[1:-1].split(","))
    ok = (value >= lo if allowed[0] == "[" else value > lo) and \
         (value <= hi if allowed[-1] == "]" else value < hi)
    return None if ok and not math.isnan(value) else f"must be in {allowed}"


def setting_comments(script):
    """{name: comment} from the `defaults = dict(...)` block of a script's source: the
    comment beside each setting, with the comment-only lines that continue it."""
    if not script or not os.path.isfile(script):
        return {}
    with open(script, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, name, inside = {}, None, False
    for line in lines:
        if line.startswith("defaults = dict("):
            inside = True
        elif inside and line.startswith(")"):
            break
        elif inside:
            m = re.match(r"\s*(\w+)=.*?#\s?(.*)$", line)
            cont = re.match(r"\s*#\s?(.*)$", line)
            if m:
                name, out[m.group(1)] = m.group(1), m.group(2).strip()
            elif cont and name:
                out[name] += " " + cont.group(1).strip()
    return out


def usage(defaults, script, limits=None):
    """The --help text: the script's docstring, then each setting with its default,
    allowed values and comment."""
    doc = ""
    if script and os.path.isfile(script):
        with open(script, encoding="utf-8") as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
    comments, limits = setting_comments(script), limits or {}
    width = max(len(f"--{k}={v}") for k, v in defaults.items()) + 4
    rows = []
    for k, v in defaults.items():
        allowed = limits.get(k)
        note = comments.get(k, "")
        if isinstance(allowed, str):
            note += f" (in {allowed})"
        rows.append(textwrap.fill(note.strip(), 100, initial_indent=f"  --{k}={v}".ljust(width),
                                  subsequent_indent=" " * width) if note else f"  --{k}={v}")
    return doc.strip() + "\n\nsettings (defaults; --name=value to change one):\n" + \
        "\n".join(rows)


# -----------------------------------------------------------------------------
# device

def get_device(name="auto"):
    """auto: cuda, then mps, then cpu. A device this machine does not have is an error
    that says so, not a driver traceback."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device={name}: not a device name (auto, cpu, cuda, cuda:1, "
                         "mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={name}: this torch ({torch.__version__}) sees no CUDA "
                         "GPU; use --device=cpu (or auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device={name}: there are {torch.cuda.device_count()} GPUs")
    if device.type == "mps" and not mps:
        raise ValueError(f"--device={name}: MPS is not available here; use --device=cpu")
    return device


# -----------------------------------------------------------------------------
# data parallel: torchrun --standalone --nproc_per_node=N script.py ...

def ddp_init(device_name, batch_size=None):
    """-> (rank, world size, device). Under torchrun this process joins the group: NCCL
    with one GPU per process (cuda:LOCAL_RANK), gloo on CPUs; ranks other than 0 print
    nothing. Plain python: (0, 1, get_device(device_name)). batch_size: the whole batch,
    which the ranks split; each must get at least one example."""
    device = get_device(device_name)
    if "RANK" not in os.environ:
        return 0, 1, device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if batch_size is not None and batch_size < world:
        raise ValueError(f"--batch_size={batch_size} is smaller than the {world} ranks: "
                         "under torchrun it is the whole batch, which the ranks split; give "
                         "each rank at least one example")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"--device={device_name}: data-parallel runs use CUDA (NCCL) or "
                         "the CPU (gloo)")
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if rank:
        sys.stdout = open(os.devnull, "w")  # rank 0 speaks for all; errors still show
    return rank, world, device


def ddp_rank_world():
    """(rank, world size) of this process: (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def ddp_wrap(model, device):
    """The model in DistributedDataParallel under torchrun (gradients averaged over the
    ranks in backward), the model itself otherwise."""
    if ddp_rank_world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def ddp_done():
    """Leave the process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# -----------------------------------------------------------------------------
# checkpoints

CKPT_FORMAT = "nano-self-judge/1"


def stop_if_diverged(step, flags, values=None, model=None, path=None):
    """Stop a run at the step its training went non-finite, in one line: the step, what,
    the likely cause, and what is kept. values: the step's statistics, floats the caller
    has already (the loss: no extra host sync); model: checked with model.diverged() (once per
    save, or per step where the next step samples from it). path: the checkpoint the run
    saves to (by default flags' out_dir/ckpt.pt), which is left as it was."""
    bad = next((k for k, v in (values or {}).items() if not math.isfinite(v)), None)
    what = f"the {bad} is {values[bad]}" if bad else model is not None and model.diverged()
    if not what:
        return
    if path is None and "out_dir" in flags:
        path = os.path.join(flags["out_dir"], "ckpt.pt")
    kept = (f"{path} keeps its last save" if path and os.path.isfile(path) else
            "no checkpoint was saved")
    raise ValueError(f"step {step}: {what}: training diverged{_likely_cause(flags, bad)}; "
                     + kept)


def _likely_cause(flags, in_loss):
    """What most likely made a run diverge. AdamW's steps are about --lr whatever the
    gradient, so weights blow up from --lr; a loss gone non-finite on finite weights
    (stage 2 checks them after every step) comes from --beta."""
    if in_loss and "beta" in flags:
        return f", most likely from --beta={flags['beta']:g} (too extreme for the loss)"
    if "lr" in flags:
        return f", most likely from --lr={flags['lr']:g} (too high: try a tenth of it)"
    return ""


def save_checkpoint(path, model, tok, meta, optimizer=None):
    """Config, weights, tokenizer JSON, meta (flags, step, ...) and optimizer state, written
    to a temporary file and renamed, so an interrupted save never leaves a broken file; a
    failed one (a full disk) removes its temporary file and says so. A model with NaN or
    inf in it is never saved (see stop_if_diverged)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # never save a compiled model's prefixed keys
    model = getattr(model, "module", model)     # nor a DistributedDataParallel wrapper's
    stop_if_diverged(meta.get("step"), meta.get("flags", {}), model=model, path=path)
    ckpt = {"format": CKPT_FORMAT, "config": asdict(model.config),
            "model": model.state_dict(), "tokenizer": tok.to_str(), "meta": meta,
            "optimizer": optimizer.state_dict() if optimizer is not None else None}
    tmp = path + ".tmp"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(_save_error(e, path)) from None


def _save_error(e, path):
    """A failed save in one line: a full disk in those words, not torch's ("unexpected pos
    182208 vs 182160": its writer found fewer bytes on disk than it wrote)."""
    kept = ("the previous checkpoint is kept" if os.path.isfile(path) else "nothing was saved")
    full = getattr(e, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if full or re.search(r"unexpected pos|No space left", str(e)):
        return f"no space left on device writing {path}; {kept}"
    return f"{path}: could not save the checkpoint ({e}); {kept}"


def _load_error(e):
    """torch.load's complaint in one short line: its own text runs to several, and for a
    foreign pickle it advises weights_only=False, which would run the file's code."""
    if isinstance(e, pickle.UnpicklingError):
        return ("it holds Python objects, not only tensors" if "Unsupported global" in str(e)
                else "not a file torch.save wrote")
    line = (str(e).strip().splitlines() or [""])[0]
    return re.split(r"(?<=\.) ", line)[0][:200]


def load_checkpoint(path, device="cpu", data=None):
    """-> (model, tok, meta); meta["optimizer"] holds the optimizer state (or None).
    data: the task folder it is for, refused if the checkpoint's is another (check_task)."""
    from tokenizers import Tokenizer
    if os.path.isdir(path):
        raise ValueError(f"{path}: a folder, not a checkpoint file; a GPT-2 folder is a "
                         "starting point for jsft.py --init, and stages that continue from "
                         "a trained model need its ckpt.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:  # read on the CPU whatever the device: a device problem is not a file problem
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # no code from files
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint (truncated or foreign file?): "
                         f"{type(e).__name__}: {_load_error(e)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a nano-self-judge checkpoint (a GPT-2 folder loads "
                         "with --init FOLDER instead)")
    try:
        model = GPT(GPTConfig(**ckpt["config"]))
    except (TypeError, ValueError) as e:  # an unknown or bad config field
        raise ValueError(f"{path}: bad model config: {e}") from None
    model.load_state_dict(ckpt["model"])
    tok = Tokenizer.from_str(ckpt["tokenizer"])
    check_vocab(tok, model, f"{path}: ")
    meta = dict(ckpt["meta"] or {})
    meta["optimizer"] = ckpt.get("optimizer")
    if data is not None:
        check_task(meta, data, path)
    return model.to(device), tok, meta


# -----------------------------------------------------------------------------
# runs: an output folder, resuming, a metrics log

def out_dir_ready(path, example=None, **reads):
    """Create the output folder and check it takes files, before any work is done (a
    typo'd path must not cost a whole training run at the final save); with reads, first
    check_out_dir(path, example, **reads)."""
    check_out_dir(path, example, **reads)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise OSError(f"--out_dir={path}: cannot write there ({e.strerror or e})") from None


def check_out_dir(out_dir, example, **reads):
    """Refuse, before any work, an --out_dir that is the folder of a path the run reads:
    its saves would overwrite the checkpoint it starts from (stage 2's reference and
    judge), or mix with a task's files. reads: {flag: path}, None for a flag that names no
    path (--init=scratch); example: a folder to suggest instead."""
    here = os.path.realpath(out_dir)
    for flag, path in reads.items():
        if path is None or not os.path.exists(path):
            continue  # the stage names what is missing
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        if os.path.realpath(folder) == here:
            other = (f", such as --out_dir={example}" if example and
                     os.path.realpath(example) != here else "")
            harm = (f"its ckpt.pt would overwrite {path}, the checkpoint it starts from"
                    if os.path.basename(path) == "ckpt.pt" else
                    "its ckpt.pt and logs would land among the files it reads")
            raise ValueError(f"--out_dir={out_dir} is the folder of --{flag}={path}: {harm}; "
                             f"give the run a folder of its own{other}")


def _same(a, b):
    """Two settings' values alike: equal, or paths to the same file or folder."""
    return a == b or (isinstance(a, str) and isinstance(b, str) and os.path.exists(a)
                      and os.path.exists(b) and os.path.samefile(a, b))


# what a run trains: --resume refuses a change to any of these that a stage has
TRAINED = ("init", "data", "mode", "loss", "judge", "judge_ratio", "rationale", "lora_rank")


def resume_from(cfg, stage, fixed, device):
    """--resume: out_dir/ckpt.pt -> (model, tok, meta), refused with a message when there
    is none, when it is another stage's, when a flag of TRAINED or `fixed` (the model's
    shape) differs from the one it was trained with, or when it has reached --max_steps.
    Resume with the command that started the run, plus --resume."""
    path = os.path.join(cfg.out_dir, "ckpt.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: no checkpoint in {cfg.out_dir} to resume from "
                                "(run without --resume to start)")
    model, tok, meta = load_checkpoint(path, device)
    made, was = meta.get("stage"), meta.get("flags", {})
    if made != stage:  # its flags are another script's: comparing them says nothing
        raise ValueError(f"--resume: {path} was not made by this command: it is a {made} "
                         f"checkpoint, not a {stage} one (resume it with {made}.py, or give "
                         "this run another --out_dir)")
    changed = [f"--{k}={cfg[k]} (it has {was.get(k)})" for k in dict.fromkeys(fixed + TRAINED)
               if k in cfg and not _same(cfg[k], was.get(k))]
    if changed:
        raise ValueError(f"--resume: {path} was not made by this command: "
                         + ", ".join(changed) + "; resume with the settings that started "
                         "it, or train anew in another --out_dir")
    if meta["step"] >= cfg.max_steps:
        raise ValueError(f"--resume: {path} is already at step {meta['step']} of "
                         f"--max_steps={cfg.max_steps}; raise --max_steps to train further")
    print(f"resuming from {path} at step {meta['step']}")
    return model, tok, meta


def check_task(meta, data, where):
    """Refuse a checkpoint trained on another task than --data: the prompts of the task
    folder it records (its --data) and of --data start differently, as "sort: ..." and
    "words: ..." do. (Its judge knows the other task only: the gate would call it weak.)
    A recorded folder that is gone, or prompts with nothing in common, prove nothing."""
    was = meta.get("flags", {}).get("data")
    if not isinstance(was, str) or not os.path.isdir(was) or _same(was, data):
        return
    a, b = prompt_start(was), prompt_start(data)
    if a and b and not os.path.commonprefix([a, b]):
        raise ValueError(f"{where} was trained on another task: {was}, whose prompts start "
                         f"{a!r}, where --data={data}'s start {b!r}; pass the task it was "
                         f"trained on, or train one on {data} (python jsft.py --data={data})")


def metrics_log(path, resume_step=0):
    """A function appending one JSON line per call to a metrics.jsonl. A fresh run starts
    it anew; a resumed one keeps the lines up to its checkpoint's step (each step appears
    once), dropping a torn last line (a kill mid-write, after the checkpoint)."""
    rows = []
    if resume_step and os.path.isfile(path):
        with open(path) as f:
            lines = f.readlines()
        for i, line in enumerate(lines, start=1):
            try:
                step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                if i == len(lines):
                    break
                raise ValueError(f"{path}:{i}: not a line of metrics; move the file aside to "
                                 "resume") from None
            if step <= resume_step:
                rows.append(line)
    with open(path, "w") as f:
        f.writelines(rows)

    def log(row):
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    return log



# -----------------------------------------------------------------------------
# progress

def progress(iterable, total, desc, start=0, disable=False, every=0.1, seconds=60):
    """A long loop's progress: tqdm's bar on a terminal; elsewhere (a log file, CI, a
    pipe) a line every tenth of the loop or every minute, e.g. 'jsft: 500 of 2000 (25%),
    41s, loss 0.812'. Both take set_postfix(name=value)."""
    from tqdm import tqdm
    if disable or sys.stderr.isatty():
        return tqdm(iterable, initial=start, total=total, desc=desc, dynamic_ncols=True,
                    disable=disable)
    return _Lines(iterable, total, desc, start, max(1, round(every * total)), seconds)


class _Lines:
    """progress() off a terminal: a line every `every` steps or `seconds`, and at the end."""
    def __init__(self, iterable, total, desc, start, every, seconds):
        self.iterable, self.total, self.desc, self.start = iterable, total, desc, start
        self.every, self.seconds, self.postfix = every, seconds, {}

    def set_postfix(self, **values):
        self.postfix = values

    def __iter__(self):
        t0 = last = time.time()
        mark = self.start + self.every
        for done, x in enumerate(self.iterable, self.start + 1):
            yield x  # the loop's body runs here: the line below reports it done
            if done >= mark or done == self.total or time.time() - last >= self.seconds:
                last, mark = time.time(), done + self.every
                print(f"{self.desc}: {done} of {self.total} ({done / self.total:.0%}), "
                      f"{last - t0:.0f}s" + "".join(f", {k} {v}" for k, v in
                                                     self.postfix.items()), flush=True)


if __name__ == "__main__":  # python common.py CKPT: what a checkpoint holds
    try:
        if len(sys.argv) != 2:
            sys.exit("usage: python common.py CKPT (a GPT-2 folder: python model.py FOLDER)")
        m, _, meta = load_checkpoint(sys.argv[1])
        print(m.config, f"\n{m.num_params() / 1e6:.2f}M parameters; stage "
              f"{meta.get('stage')}, step {meta.get('step')}")
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
