"""Plumbing (common.py): flags with their help and limits, the device, checkpoints on
disk, the output folder, resuming, the metrics log.

    python -m pytest tests/test_common.py -q     (from the repository root; a second)
"""
import errno
import json
import os
import re

import pytest
import torch

import jsft
import selfjudge
from common import (get_device, load_checkpoint, metrics_log, out_dir_ready, parse_flags,
                    resume_from, save_checkpoint)
from conftest import SORT, make_tiny
from data.chat import load_tokenizer


# -----------------------------------------------------------------------------
# settings

def test_parse_flags_types_bools_and_unknown_names(capsys):
    d = dict(lr=1e-3, steps=10, name="x", offline=False, top_k=None)
    cfg = parse_flags(d, ["--lr=1", "--steps", "5", "--offline", "--top_k=7"])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.steps == 5
    assert cfg.offline is True and cfg.top_k == "7"
    with pytest.raises(SystemExit) as e:
        parse_flags(d, ["--stepz=3"])
    assert "--steps" in str(e.value)  # the message lists the known names
    with pytest.raises(SystemExit):
        parse_flags(d, ["--steps=abc"])


def test_help_shows_every_setting_with_its_comment_and_limits(capsys):
    """--help used to print names and defaults only: what --min_confidence or --cutoff do
    was in the source, not on the screen."""
    with pytest.raises(SystemExit) as e:
        parse_flags(selfjudge.defaults, ["--help"], selfjudge.__file__, selfjudge.limits)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Stage 2: self-training.")  # the script's docstring first
    for name in selfjudge.defaults:
        assert f"--{name}=" in out
    line = " ".join(out[out.index("--min_confidence="):].split("--cutoff=")[0].split())
    assert ("train only on pairs the judge decides by |2p-1| >= this (under 1: no judgment "
            "is that sure, |2p-1| < 1 always) (in [0, 1))") in line
    # a comment continued on the next line is part of the setting's description
    assert "so the judge sees the policy's rare mistakes" in " ".join(out.split())
    assert all(len(x) <= 100 for x in out.splitlines() if x.startswith("  --"))


@pytest.mark.parametrize("flag, says", [
    ("--judge_ratio=1.5", "--judge_ratio=1.5: must be in [0, 1]"),
    ("--judge_ratio=-0.5", "--judge_ratio=-0.5: must be in [0, 1]"),
    ("--batch_size=0", "--batch_size=0: must be in [1, inf)"),
    ("--max_steps=0", "--max_steps=0: must be in [1, inf)"),
    ("--lr=nan", "--lr=nan: must be in (0, inf)"),
    ("--pos=absolute", "--pos=absolute: choose one of rope, learned"),
])
def test_a_flag_outside_its_range_is_refused_with_its_name(flag, says, capsys):
    with pytest.raises(SystemExit) as e:
        parse_flags(jsft.defaults, [flag], jsft.__file__, jsft.limits)
    assert says in str(e.value)


@pytest.mark.parametrize("flag", ["--beta=0", "--beta=nan", "--top_p=0", "--temperature=0",
                                  "--temperature=-1", "--mode=dpo", "--loss=kto"])
def test_stage_2_refuses_values_that_cannot_train(flag):
    """--beta=0 leaves the loss at log 2 whatever the pair, --top_p=0 and --temperature=0
    sample the same response twice (every pair identical), a negative temperature samples
    garbage: each ran to "done" before."""
    with pytest.raises(SystemExit) as e:
        parse_flags(selfjudge.defaults, [flag], selfjudge.__file__, selfjudge.limits)
    assert flag.split("=")[0] in str(e.value)


def test_min_confidence_1_is_refused_as_the_flags_fault():
    """--min_confidence=1 skipped every pair, and the run ended blaming the judge ("a
    judge undecided on every pair is near chance"): no judgment reaches |2p-1| = 1."""
    with pytest.raises(SystemExit) as e:
        parse_flags(selfjudge.defaults, ["--min_confidence=1"], selfjudge.__file__,
                    selfjudge.limits)
    assert str(e.value).startswith("error: --min_confidence=1.0: must be in [0, 1)")
    assert "no judgment is that sure, |2p-1| < 1 always" in str(e.value)


def test_every_script_limits_only_settings_it_has():
    import evaluate
    import sample
    for m in (jsft, selfjudge, evaluate, sample):
        assert set(m.limits) <= set(m.defaults), m.__name__
        parse_flags(m.defaults, [], m.__file__, m.limits)  # the defaults are allowed


def test_given_holds_the_names_set_on_the_command_line():
    cfg = parse_flags(dict(a=1, b=2), ["--b=2"])
    assert cfg.given == {"b"} and dict(cfg) == dict(a=1, b=2)


# -----------------------------------------------------------------------------
# device, output folder, checkpoints

def test_a_device_this_machine_lacks_is_a_clear_error():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU; use --device=cpu"):
            get_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        get_device("gpu")
    assert get_device("cpu").type == "cpu"


def test_out_dir_under_a_file_is_refused_before_any_work(tmp_path):
    """--out_dir under a regular file trained every step, then lost them to a
    NotADirectoryError at the final save."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="--out_dir=.*cannot write there"):
        out_dir_ready(str(tmp_path / "file" / "run"))
    out_dir_ready(str(tmp_path / "new" / "run"))
    assert os.listdir(tmp_path / "new" / "run") == []


@pytest.mark.parametrize("error, says", [
    (RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 182208 vs "
                  "182160"), "no space left on device writing {path}; the previous "
                                "checkpoint is kept"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device writing"),
    (PermissionError(errno.EACCES, "Permission denied"), r"{path}: could not save the "
     r"checkpoint \(.*Permission denied\); the previous checkpoint is kept"),
], ids=["torch", "enospc", "other"])
def test_a_failed_save_removes_its_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch,
                                                                         error, says):
    """A full disk left ckpt.pt.tmp behind with a torch traceback; then it was reported in
    torch's words ("unexpected pos 182208 vs 182160": its writer's byte count, which a
    short write breaks), not as a full disk."""
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size())
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model, tok, dict(step=1))

    def full(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise error
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="^" + says.format(path=re.escape(path))):
        save_checkpoint(path, model, tok, dict(step=2))
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)[2]["step"] == 1


@pytest.mark.parametrize("case", ["nan", "overflow", "collapse"])
def test_a_model_gone_nan_or_collapsed_is_never_saved(tmp_path, case):
    """A diverged run saved its NaN weights over the last good checkpoint. Weights can be
    finite and still useless: after one step at --lr=1e30 they are near 1e29 and every
    forward pass overflows to NaN; after one at --lr=1e6, near 1e5, the logits reach 1e11
    and the policy samples one response forever. So the outputs on a few tokens are
    checked too."""
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size())
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model, tok, dict(step=1))
    with torch.no_grad():
        w = model.transformer.h[0].attn.c_attn.weight
        if case == "nan":
            w[0, 0] = float("nan")
        else:
            model.lm_head.weight.mul_(1e29 if case == "overflow" else 1e5)
    says = dict(nan="weight transformer.h.0.attn.c_attn.weight holds NaN or inf",
                overflow="the model's outputs are NaN or inf",
                collapse=r"the model's logits reach \S+, where a trained model's stay")[case]
    with pytest.raises(ValueError, match=rf"^step 2: {says}.*training diverged, most likely "
                                         rf"from --lr=0\.5 .*; {path} keeps its last save$"):
        save_checkpoint(path, model, tok, dict(step=2, flags=dict(lr=0.5)))
    assert load_checkpoint(path)[2]["step"] == 1 and os.listdir(tmp_path) == ["ckpt.pt"]


def test_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="a folder, not a checkpoint file"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "none.pt"))


# -----------------------------------------------------------------------------
# resuming

def resume_cfg(tmp_path, **flags):
    return parse_flags(dict(jsft.defaults, out_dir=str(tmp_path)),
                       [f"--{k}={v}" for k, v in flags.items()])


def test_resume_refuses_a_changed_model_shape_and_a_finished_run(tmp_path):
    """`--resume --n_layer=2` ran the 4-layer model and wrote n_layer=2 into its meta."""
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size())
    flags = dict(resume_cfg(tmp_path))
    save_checkpoint(str(tmp_path / "ckpt.pt"), model, tok, dict(step=5, flags=flags,
                                                                 stage="jsft"))
    model, _, meta = resume_from(resume_cfg(tmp_path), "jsft", jsft.SHAPE, "cpu")
    assert meta["step"] == 5
    with pytest.raises(ValueError, match=r"--n_layer=2 \(it has 4\)"):
        resume_from(resume_cfg(tmp_path, n_layer=2), "jsft", jsft.SHAPE, "cpu")
    with pytest.raises(ValueError, match="already at step 5 of --max_steps=5"):
        resume_from(resume_cfg(tmp_path, max_steps=5), "jsft", jsft.SHAPE, "cpu")
    with pytest.raises(ValueError, match="it is a jsft checkpoint"):
        resume_from(resume_cfg(tmp_path), "selfjudge", (), "cpu")
    with pytest.raises(FileNotFoundError, match="no checkpoint in .* to resume from"):
        resume_from(resume_cfg(tmp_path / "empty"), "jsft", jsft.SHAPE, "cpu")


def test_resume_refuses_a_changed_loss_judge_or_data_naming_it(tmp_path, monkeypatch):
    """`--resume` with a changed --loss, --judge or --data was accepted silently, and the
    checkpoint recorded only the new values: the run it finished was neither. The same
    task folder by another path is no change."""
    tok = load_tokenizer(SORT)
    flags = dict(parse_flags(dict(selfjudge.defaults, out_dir=str(tmp_path), data=SORT), []))
    save_checkpoint(str(tmp_path / "ckpt.pt"), make_tiny(vocab_size=tok.get_vocab_size()),
                    tok, dict(step=5, flags=flags, stage="selfjudge"))

    def resume(*argv):
        cfg = parse_flags(dict(selfjudge.defaults, out_dir=str(tmp_path), data=SORT), argv)
        return resume_from(cfg, "selfjudge", (), "cpu")
    for flag, was in (("--loss=hinge", "sigmoid"), ("--judge=current", "reference"),
                      ("--data=data/words", SORT), ("--mode=raft", "onpolicy")):
        with pytest.raises(ValueError, match=rf"was not made by this command: {flag} \(it has "
                                             rf"{was}\); resume with the settings that "
                                             "started it"):
            resume(flag)
    monkeypatch.chdir(os.path.dirname(SORT))
    assert resume("--data=./sort", "--max_steps=9")[2]["step"] == 5
    run = tmp_path / "jsft"  # jsft.py: the mix and the judge's target
    save_checkpoint(str(run / "ckpt.pt"), make_tiny(vocab_size=tok.get_vocab_size()), tok,
                    dict(step=5, flags=dict(resume_cfg(run)), stage="jsft"))
    for flag, was in (("judge_ratio", 0.7), ("rationale", False)):
        with pytest.raises(ValueError, match=rf"--{flag}=\S+ \(it has {was}\)"):
            resume_from(resume_cfg(run, **{flag: 1 - was}), "jsft", jsft.SHAPE, "cpu")


def test_metrics_log_keeps_each_step_once_after_a_resume(tmp_path):
    """Resuming from an older checkpoint after a kill left the steps between them twice
    in metrics.jsonl (256 rows for 201 steps)."""
    path = str(tmp_path / "metrics.jsonl")
    log = metrics_log(path)
    for step in range(8):  # killed after step 7; the last checkpoint was at step 5
        log(dict(step=step))
    log = metrics_log(path, resume_step=5)
    for step in range(6, 10):
        log(dict(step=step))
    with open(path) as f:
        assert [json.loads(x)["step"] for x in f] == list(range(10))
    metrics_log(path)  # a fresh run starts the file anew
    assert os.path.getsize(path) == 0


def test_resume_drops_a_metrics_line_torn_by_a_kill(tmp_path):
    """A kill in the middle of a metrics write left half a line, and --resume died on it
    with a JSON error naming no file."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    metrics_log(str(path), resume_step=2)(dict(step=3))
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')  # not a torn write: say where
    with pytest.raises(ValueError, match=rf"^{path}:2: not a line of metrics"):
        metrics_log(str(path), resume_step=2)
