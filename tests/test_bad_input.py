"""Bad input gets a one-line error that says what is wrong, before any work: each test
is a case that gave a traceback, a message pointing the wrong way, or exit 0 having done
nothing. (Flags, checkpoints and the output folder: test_common.py; the loader and the
oracle: test_data.py.)

    python -m pytest tests/test_bad_input.py -q     (from the repository root; seconds)
"""
import gzip
import json
import os
import runpy
import subprocess
import sys

import pytest
import torch

import evaluate
import jsft
import judge
import sample
import selfjudge
from conftest import ROOT, write_small_sort
from data.task import DataError

TINY_JSFT = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--batch_size=8", "--eval_interval=0",
             "--eval_prompts=4", "--block_size=256", "--device=cpu"]
TINY_SJ = ["--max_steps=1", "--batch_size=4", "--eval_interval=1", "--eval_prompts=4",
           "--max_new_tokens=8", "--cutoff=keep", "--min_confidence=0", "--device=cpu",
           "--allow_weak_judge"]  # an untrained judge is near chance
pytestmark = pytest.mark.e2e  # each case runs a script's main as a user would

# 245 numbers: the query fits the 256-token context, its judge prompt does not
LONG = json.dumps({"prompt": "sort: " + " ".join(["1"] * 245)})


@pytest.fixture(scope="module")
def task_and_ckpt(tmp_path_factory):
    """A small slice of the sort task and a 2-step JSFT checkpoint (context 256)."""
    root = tmp_path_factory.mktemp("bad_input")
    data = write_small_sort(root / "task")
    jsft.main(["--data", data, "--max_steps=2", "--out_dir", str(root / "jsft")] + TINY_JSFT)
    return data, str(root / "jsft" / "ckpt.pt")


def copy_task(tmp_path, name, line3=None):
    """A fresh small task; with line3, that text replaces line 3 of NAME.jsonl."""
    data = write_small_sort(tmp_path / "task")
    if line3 is not None:
        path = os.path.join(data, name + ".jsonl")
        with open(path) as f:
            lines = f.readlines()
        lines[2] = line3 + "\n"
        with open(path, "w") as f:
            f.writelines(lines)
    return data


def run_as_script(monkeypatch, script, *args):
    """`python SCRIPT ARGS` in this process -> the message it exits with."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    return e.value.code


# -----------------------------------------------------------------------------
# data: prompts too long to judge, bad lines

@pytest.mark.parametrize("script, name", [("selfjudge", "prompts"), ("evaluate", "test"),
                                          ("jsft", "test")])
def test_a_prompt_too_long_to_judge_is_refused_naming_its_file_and_line(
        task_and_ckpt, tmp_path, script, name):
    """It was "a judge prompt for these contexts needs 263 tokens, leaving no room for
    responses": no file, no line, and from jsft.py only after training."""
    data = copy_task(tmp_path, name, LONG)
    out = str(tmp_path / "out")
    argv = dict(selfjudge=["--init", task_and_ckpt[1], "--out_dir", out] + TINY_SJ,
                evaluate=["--ckpt", task_and_ckpt[1], "--n_prompts=4", "--device=cpu"],
                jsft=["--max_steps=1", "--out_dir", out] + TINY_JSFT)[script]
    with pytest.raises(DataError, match=rf"{name}\.jsonl:3: its judge prompt with two "
                                        r"responses of \d+ tokens is \d+ tokens\. "
                                        r".*--skip_bad_lines"):
        dict(selfjudge=selfjudge, evaluate=evaluate, jsft=jsft)[script].main(
            ["--data", data] + argv)
    assert not os.path.exists(os.path.join(out, "ckpt.pt"))


def test_skip_bad_lines_drops_a_prompt_too_long_to_judge(task_and_ckpt, tmp_path, capsys):
    data = copy_task(tmp_path, "prompts", LONG)
    selfjudge.main(["--data", data, "--init", task_and_ckpt[1], "--out_dir", str(tmp_path / "o"),
                    "--skip_bad_lines"] + TINY_SJ)
    assert "prompts.jsonl:3: its judge prompt" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "o" / "ckpt.pt")
    with open(os.path.join(data, "prompts.jsonl"), "w") as f:  # every prompt too long
        f.write(LONG + "\n" + LONG + "\n")
    with pytest.raises(DataError, match=r"prompts\.jsonl: all 2 prompts are too long to judge"):
        selfjudge.main(["--data", data, "--init", task_and_ckpt[1], "--out_dir",
                        str(tmp_path / "o2"), "--skip_bad_lines"] + TINY_SJ)


def test_the_bad_line_advice_names_a_flag_the_script_has(task_and_ckpt, tmp_path, capsys):
    """read_jsonl told selfjudge.py and evaluate.py users to "pass skip_bad_lines=True",
    which no script accepted but jsft.py (as --skip_bad_lines)."""
    for m in (jsft, selfjudge, evaluate, judge):
        assert "skip_bad_lines" in m.defaults, m.__name__
    data = copy_task(tmp_path, "test", '{"prompt": ')
    argv = ["--data", data, "--ckpt", task_and_ckpt[1], "--n_prompts=4", "--device=cpu"]
    with pytest.raises(DataError, match=r"test\.jsonl:3: not valid JSON .*; fix the line, or "
                                        "pass --skip_bad_lines to drop bad lines"):
        evaluate.main(argv)
    evaluate.main(argv + ["--skip_bad_lines"])
    assert "skipped 1 bad line(s)" in capsys.readouterr().out


def test_offline_dpo_without_held_out_prompts_runs(task_and_ckpt, tmp_path):
    """response_budget took max() of no prompts: "error: max() arg is an empty sequence"."""
    data, ckpt = task_and_ckpt
    selfjudge.main(["--data", data, "--init", ckpt, "--out_dir", str(tmp_path)] + TINY_SJ
                   + ["--mode=offline", "--eval_prompts=0"])
    assert os.path.isfile(tmp_path / "ckpt.pt")


@pytest.mark.parametrize("shape, says", [
    (["--n_embd=30", "--n_head=4"], "n_embd=30 is not a multiple of n_head=4"),
    (["--n_embd=36", "--n_head=4"], "n_embd / n_head = 9 must be even"),
])
def test_a_model_shape_that_cannot_be_built_is_refused_before_training(tmp_path, shape, says):
    """An AssertionError from inside the attention layer, or a RuntimeError of mismatched
    tensor sizes from the rotary embedding at the first step."""
    data = write_small_sort(tmp_path / "task")
    with pytest.raises(ValueError, match=says):
        jsft.main(["--data", data, "--out_dir", str(tmp_path / "o")] + TINY_JSFT + shape)
    assert not os.path.exists(tmp_path / "o")


def test_a_tokenizer_that_splits_the_decision_is_named(tmp_path):
    """The error said "tokenizer: ..." without saying which file."""
    data = write_small_sort(tmp_path / "task")
    path = os.path.join(data, "tokenizer.json")
    with open(path) as f:
        j = json.load(f)
    j["pre_tokenizer"]["add_prefix_space"] = True  # " A" after <|assistant|>: two tokens
    with open(path, "w") as f:
        json.dump(j, f)
    with pytest.raises(ValueError, match=rf"^{path}: tokenizer: decision 'A' is not one token"):
        jsft.main(["--data", data, "--out_dir", str(tmp_path / "o")] + TINY_JSFT)


# -----------------------------------------------------------------------------
# checkpoints, run folders, devices

def test_report_names_a_missing_run_folder_before_sampling(task_and_ckpt, tmp_path,
                                                           monkeypatch):
    """--report sampled every earlier model, minutes each, before "checkpoint not found";
    --report=, was an IndexError traceback."""
    def never(*a, **k):
        raise AssertionError("sampled before checking the run folders")
    monkeypatch.setattr(evaluate, "sample_responses", never)
    data, ckpt = task_and_ckpt
    missing = str(tmp_path / "typo")
    with pytest.raises(FileNotFoundError, match=rf"no ckpt\.pt in {missing} \(a run folder"):
        evaluate.main(["--data", data, f"--report={os.path.dirname(ckpt)},{missing}"])
    with pytest.raises(FileNotFoundError, match="--report=,: name the run folders"):
        evaluate.main(["--data", data, "--report=,"])


def test_a_missing_checkpoint_or_a_gpt2_folder_is_named(tmp_path):
    """judge.py --ckpt=GPT2_FOLDER said "checkpoint not found"."""
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/none\.pt: checkpoint not found"):
        sample.main(["--ckpt", str(tmp_path / "none.pt"), "--device=cpu"])
    folder = os.path.join(ROOT, "tests", "fixtures", "tiny-gpt2")
    with pytest.raises(ValueError, match="a folder, not a checkpoint file"):
        judge.main(["--ckpt", folder, "--device=cpu"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("m", [jsft, selfjudge, judge, sample, evaluate],
                         ids=lambda m: m.__name__)
def test_every_script_says_there_is_no_gpu(m, tmp_path):
    """jsft.py and sample.py printed a driver traceback; selfjudge.py and judge.py called a
    good checkpoint "not readable (truncated or foreign file?)"."""
    with pytest.raises(ValueError, match="^--device=cuda: this torch .* sees no CUDA GPU"):
        m.main(["--device=cuda"] + (["--out_dir", str(tmp_path)] if "out_dir" in m.defaults
                                    else []))


def test_a_checkpoint_is_read_on_the_cpu_whatever_the_device(task_and_ckpt, monkeypatch):
    """Read onto the asked device, a good checkpoint was "not readable" without a GPU."""
    from common import load_checkpoint
    seen, real = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k["map_location"])
                        or real(*a, **k))
    model, _, _ = load_checkpoint(task_and_ckpt[1], device="meta")
    assert seen == ["cpu"] and next(model.parameters()).device.type == "meta"


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.parametrize("case", ["missing", "truncated", "text", "folder"])
def test_common_py_on_a_bad_file_exits_with_one_line(task_and_ckpt, tmp_path, monkeypatch,
                                                     case):
    """torch's messages run to several lines, and for a foreign pickle advise
    weights_only=False, which would run the file's code."""
    with open(task_and_ckpt[1], "rb") as f:
        good = f.read()
    path = dict(missing=str(tmp_path / "none.pt"), folder=str(tmp_path),
                truncated=write_bytes(tmp_path / "t.pt", good[:len(good) // 2]),
                text=write_bytes(tmp_path / "t.json", b"\n"))[case]
    msg = run_as_script(monkeypatch, "common.py", path)
    assert msg.startswith(f"error: {path}: ") and "\n" not in msg and "weights_only" not in msg


@pytest.mark.parametrize("case, says", [
    ("config_cut", "config.json: not valid JSON (Unterminated string"),
    ("config_list", "config.json: not a JSON object of GPT-2 settings"),
    ("bin_cut", "pytorch_model.bin: not a readable PyTorch weights file (truncated?)"),
    ("shape", "model.safetensors: tensor 'transformer.wte.weight' does not match its header"),
    ("a_file", "ckpt.pt: a file; python model.py reads a GPT-2 folder"),
    ("heads", "config.json: n_embd=32 is not a multiple of n_head=5"),
])
def test_model_py_on_a_bad_folder_exits_with_one_line(tmp_path, monkeypatch, case, says):
    """Each was a traceback (AttributeError, RuntimeError) or a JSON error naming no file."""
    fix = os.path.join(ROOT, "tests", "fixtures")
    src = "tiny-gpt2-bin" if case == "bin_cut" else "tiny-gpt2"
    folder = tmp_path / "gpt2"
    os.makedirs(folder)
    for name in os.listdir(os.path.join(fix, src)):
        with open(os.path.join(fix, src, name), "rb") as f:
            write_bytes(folder / name, f.read())
    if case == "config_cut":
        write_bytes(folder / "config.json", (folder / "config.json").read_bytes()[:30])
    elif case == "heads":
        config = json.loads((folder / "config.json").read_text())
        write_bytes(folder / "config.json", json.dumps(dict(config, n_head=5)).encode())
    elif case == "config_list":
        write_bytes(folder / "config.json", b"[1]")
    elif case == "bin_cut":
        cut = (folder / "pytorch_model.bin").read_bytes()[:2000]
        write_bytes(folder / "pytorch_model.bin", cut)
    elif case == "shape":  # the header claims twice as many rows as the bytes hold
        raw = (folder / "model.safetensors").read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        header["transformer.wte.weight"]["shape"][0] *= 2
        h = json.dumps(header).encode()
        write_bytes(folder / "model.safetensors", len(h).to_bytes(8, "little") + h + raw[8 + n:])
    path = str(folder / "ckpt.pt") if case == "a_file" else str(folder)
    if case == "a_file":
        write_bytes(path, b"x")
    msg = run_as_script(monkeypatch, "model.py", path)
    assert msg.startswith("error: ") and says in msg and "\n" not in msg


# -----------------------------------------------------------------------------
# the HH-RLHF importer, as a command: the exit code matters

def hh(*args):
    r = subprocess.run([sys.executable, "-m", "data.hh", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def test_hh_import_of_nothing_usable_fails_and_writes_nothing(tmp_path):
    """Every record bad: exit 0 and an empty task folder. A missing or corrupt input: a
    traceback."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('nope\n{"chosen": "x"}\n\n')
    out = tmp_path / "task"
    code, err = hh(bad, out)
    assert code == 1 and err == (f"error: {bad}: no usable pair in 2 non-blank lines (1 not "
                                 "valid JSON, 1 no string field 'rejected'; first: line 1: not "
                                 "valid JSON; line 2: no string field 'rejected'); nothing "
                                 f"written to {out}")
    assert not out.exists()
    code, err = hh(tmp_path / "none.jsonl", out)
    assert code == 1 and err == f"error: {tmp_path}/none.jsonl: no such file (pass an HH-RLHF " \
                                ".jsonl or .jsonl.gz)"
    cut = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(b"".join(b'{"chosen": "%d"}\n' % i for i in range(5000)))
    cut.write_bytes(whole[:len(whole) // 2])
    code, err = hh(cut, out)
    assert code == 1 and err.startswith(f"error: {cut}: could not read it (EOFError")
    code, err = hh(bad, out, "--test_frac", "0.5", "--prompts_frac", "0.5")
    assert code == 2 and err.endswith("each at least 0, and together under 1 (the rest are the "
                                      "training pairs)")
    assert not out.exists()


# -----------------------------------------------------------------------------
# what a run starts from is never written over; a run that diverges stops there

def bytes_of(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("script", ["selfjudge.py", "jsft.py"])
def test_a_stage_never_writes_over_the_checkpoint_it_starts_from(task_and_ckpt, tmp_path,
                                                                  monkeypatch, script):
    """`selfjudge.py --init=DIR/ckpt.pt --out_dir=DIR` exited 0, "saved DIR/ckpt.pt": the
    JSFT checkpoint, its reference and judge, was gone, and a rerun silently took the
    self-trained model as the reference. Refused now before any work: one line, the file
    untouched."""
    data, ckpt = task_and_ckpt
    run = tmp_path / "jsft"
    os.makedirs(run)
    init = write_bytes(run / "ckpt.pt", bytes_of(ckpt))
    tiny = TINY_SJ if script == "selfjudge.py" else TINY_JSFT + ["--max_steps=1"]
    msg = run_as_script(monkeypatch, script, "--data", data, "--init", init, "--out_dir",
                        str(run), *tiny)
    assert msg.startswith(f"error: --out_dir={run} is the folder of --init={init}: its "
                          f"ckpt.pt would overwrite {init}, the checkpoint it starts from; "
                          "give the run a folder of its own, such as --out_dir=out/")
    assert "\n" not in msg and os.listdir(run) == ["ckpt.pt"] and bytes_of(init) == bytes_of(ckpt)
    msg = run_as_script(monkeypatch, script, "--data", data, "--init", init, "--out_dir",
                        data, *tiny)  # nor into the task folder it reads
    assert msg.startswith(f"error: --out_dir={data} is the folder of --data={data}: its "
                          "ckpt.pt and logs would land among the files it reads")
    assert "ckpt.pt" not in os.listdir(data)


def test_jsft_resume_on_a_stage_2_checkpoint_says_what_it_is(task_and_ckpt, tmp_path):
    """After stage 2 had written over the JSFT checkpoint, `jsft.py --resume` there listed
    every flag as changed (`--n_layer=4 (it has None), ...`): the folder holds a stage-2
    checkpoint, whose flags are another script's."""
    data, ckpt = task_and_ckpt
    selfjudge.main(["--data", data, "--init", ckpt, "--out_dir", str(tmp_path)] + TINY_SJ)
    with pytest.raises(ValueError, match=r"^--resume: .*ckpt\.pt was not made by this "
                                         r"command: it is a selfjudge checkpoint, not a jsft "
                                         r"one \(resume it with selfjudge\.py") as e:
        jsft.main(["--data", data, "--out_dir", str(tmp_path), "--resume"] + TINY_JSFT)
    assert "(it has None)" not in str(e.value)


def test_a_checkpoint_of_another_task_is_named_not_called_a_weak_judge(task_and_ckpt,
                                                                      tmp_path):
    """A words checkpoint given to selfjudge.py on sort data was refused by the judge gate,
    "train it further": no amount of training on words makes a sort judge. The task it
    records (its --data) has prompts that start "words: ", the sort task's "sort: "."""
    from common import load_checkpoint, save_checkpoint
    data, ckpt = task_and_ckpt
    words = tmp_path / "words"
    os.makedirs(words)
    with open(os.path.join(ROOT, "data", "words", "prompts.jsonl")) as f:
        write_bytes(words / "prompts.jsonl", "".join(f.readlines()[:20]).encode())
    model, tok, meta = load_checkpoint(ckpt)
    meta["flags"]["data"] = str(words)  # as if jsft.py had trained it on the words task
    save_checkpoint(str(tmp_path / "words.pt"), model, tok, meta)
    with pytest.raises(ValueError, match=r"words\.pt was trained on another task: .*words, "
                                         r"whose prompts start 'words: ', where --data=.*'s "
                                         r"start 'sort: '; pass the task it was trained on"):
        selfjudge.main(["--data", data, "--init", str(tmp_path / "words.pt"), "--out_dir",
                        str(tmp_path / "o")] + TINY_SJ)
    assert not os.path.exists(tmp_path / "o" / "ckpt.pt")


def weights_finite(path):
    from common import load_checkpoint
    model, _, meta = load_checkpoint(path)
    return meta["step"], all(torch.isfinite(p).all() for p in model.parameters())


def test_a_diverged_jsft_run_stops_at_that_step_and_keeps_the_last_good_checkpoint(
        task_and_ckpt, tmp_path):
    """`jsft.py --lr=100` (inside the advertised range) went on to "done ... held-out sft
    loss n/a" with every weight NaN saved, then a traceback from torch.multinomial. Now the
    first non-finite loss stops the run, naming the step and --lr, and the last checkpoint
    saved before it stays as it was."""
    data = task_and_ckpt[0]
    argv = ["--data", data, "--out_dir", str(tmp_path)] + TINY_JSFT + ["--eval_interval=1"]
    jsft.main(argv + ["--max_steps=2"])
    with pytest.raises(ValueError, match=r"^step \d: .*: training diverged, most likely from "
                                         r"--lr=1e\+10 \(too high: try a tenth of it\); "
                                         rf"{tmp_path}/ckpt\.pt keeps its last save$"):
        jsft.main(argv + ["--max_steps=6", "--resume", "--lr=1e10", "--warmup_steps=0"])
    assert weights_finite(tmp_path / "ckpt.pt") == (2, True)


@pytest.mark.parametrize("flag, what", [
    ("--lr=1e30", r"the model's outputs are NaN or inf \(its weights have grown too large\)"),
    ("--lr=1e6", r"the model's logits reach \S+, where a trained model's stay within "
                 "a few hundred"),
    ("--beta=1e308", "the loss is (nan|inf)"),
])
def test_a_diverged_stage_2_run_stops_at_that_step_and_keeps_the_last_good_checkpoint(
        task_and_ckpt, tmp_path, flag, what):
    """`selfjudge.py --lr=1e30` and `--beta=1e308` died in torch.multinomial ("probability
    tensor contains either inf, nan or element < 0") at the first sampling after the
    update; `--lr=1e6` exited 0 with a collapsed policy (every pair identical) and NaN in
    metrics.jsonl. One step at --lr=1e30 leaves the weights finite but so large that a
    forward pass overflows, one at --lr=1e6 logits near 1e11, so the policy's outputs are
    checked after each update, before the next step samples from it; a non-finite loss on
    finite weights is --beta's."""
    data, ckpt = task_and_ckpt
    argv = ["--data", data, "--init", ckpt, "--out_dir", str(tmp_path)] + TINY_SJ
    selfjudge.main(argv + ["--ckpt_interval=1"])  # a good step 1, saved
    name = flag.split("=")[0]
    with pytest.raises(ValueError, match=rf"^step 2: {what}: training diverged, most likely "
                                         rf"from {name}=1e\+[0-9]+ \(too .*\); {tmp_path}/"
                                         r"ckpt\.pt keeps its last save$"):
        selfjudge.main(argv + ["--ckpt_interval=1", "--max_steps=3", "--resume", flag])
    assert weights_finite(tmp_path / "ckpt.pt") == (1, True)
    with open(tmp_path / "metrics.jsonl") as f:  # the diverged step is not logged
        assert [json.loads(line)["step"] for line in f] == [0, 1]


def test_hh_import_into_a_task_folder_is_refused_unless_told_to_replace_it(tmp_path):
    """Into a folder holding data/sort's files, `python -m data.hh` wrote its four files
    and exited 0: sort's oracle.py and tokenizer.json stayed beside the new data, and the
    next run failed on the oracle ("not a sort prompt"). Refused now before reading the
    input; --replace replaces the whole task, and never touches what is not a task's."""
    src = tmp_path / "hh.jsonl"
    src.write_text("".join(json.dumps({k: f"\n\nHuman: q{i}?\n\nAssistant: {a}" for k, a in
                                       (("chosen", f"yes {i}"), ("rejected", "no"))}) + "\n"
                           for i in range(40)))
    out = write_small_sort(tmp_path / "task")
    before = {n: bytes_of(os.path.join(out, n)) for n in os.listdir(out)}
    code, err = hh(src, out)
    assert code == 1 and err == (f"error: {out}: not empty (it holds oracle.py, pairs.jsonl, "
                                 "prompts.jsonl, sft.jsonl, test.jsonl, tokenizer.json): the "
                                 "new task's files would mix with these; name a new folder, "
                                 "or pass --replace to replace the task there")
    write_bytes(os.path.join(out, "notes.txt"), b"mine")
    code, err = hh(src, out, "--replace")
    assert code == 1 and err == (f"error: {out}: holds notes.txt beside a task's files, and "
                                 "--replace replaces a task folder only: move those away, or "
                                 "name a new folder")
    assert {n: bytes_of(os.path.join(out, n)) for n in before} == before
    os.remove(os.path.join(out, "notes.txt"))
    code, err = hh(src, out, "--replace")
    assert code == 0 and sorted(os.listdir(out)) == ["pairs.jsonl", "prompts.jsonl",
                                                     "sft.jsonl", "test.jsonl"]
    assert sorted(os.listdir(tmp_path)) == ["hh.jsonl", "task"]  # no temporary folder left
