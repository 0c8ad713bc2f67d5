"""The whole pipeline as a user runs it: every stage on each device this machine has, with
every random draw checked against its generator's device; two processes under torchrun
against one; and the real-model recipe (a GPT-2 folder on HH-RLHF data), no oracle anywhere.

    python -m pytest tests/test_pipeline.py -q     (from the repository root; ~15 s on a CPU)
"""
import os

import pytest
import torch

import evaluate
import jsft
import selfjudge
from conftest import SORT, write_small_sort
from data.chat import load_tokenizer
from judge import fit_prompts, response_room

# a tiny JSFT model and a two-step self-training run, on any device
TINY_JSFT = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--batch_size=8", "--max_steps=2",
             "--eval_interval=0", "--eval_prompts=4", "--block_size=256"]
TINY_SJ = ["--max_steps=2", "--batch_size=4", "--eval_interval=1", "--eval_prompts=4",
           "--max_new_tokens=8", "--cutoff=keep", "--min_confidence=0"]
MODES = ("onpolicy", "offpolicy", "offline", "raft")


def run_pipeline(root, device):
    """jsft -> selfjudge in every mode -> evaluate: the judge's agreement, best-of-N and
    the results table, all on `device`."""
    data = write_small_sort(root / "task")
    dev = [f"--device={device}"]
    jsft.main(["--data", data, "--out_dir", str(root / "jsft")] + TINY_JSFT + dev)
    ckpt = str(root / "jsft" / "ckpt.pt")
    for mode in MODES:
        selfjudge.main(["--data", data, "--init", ckpt, "--out_dir", str(root / mode),
                        f"--mode={mode}"] + TINY_SJ + dev)
    common = ["--data", data, "--n_prompts=4", "--max_new_tokens=8"] + dev
    evaluate.main(["--ckpt", ckpt, "--pairs_per_prompt=1"] + common)
    evaluate.main(["--ckpt", ckpt, "--best_of=4"] + common)
    runs = ",".join(str(root / d) for d in ("jsft",) + MODES)
    evaluate.main(["--report", runs, "--report_samples=2"] + common)


# -----------------------------------------------------------------------------
# random draws and their generators' devices

REAL_GENERATOR = torch.Generator


class AskedGenerator(REAL_GENERATOR):
    """torch.Generator, remembering the device the code asked for: `torch.Generator(
    device=d)` is a generator for the compute device (a CUDA one on a GPU machine),
    `torch.Generator()` a CPU generator whatever the machine."""

    def __new__(cls, device=None):
        g = REAL_GENERATOR.__new__(cls, device="cpu" if device is None else device)
        g.asked = device
        return g


@pytest.fixture
def draws(monkeypatch):
    """Every torch random draw made with a generator, checked as if the compute device were
    a GPU: a generator made for the compute device may fill only a tensor placed on its own
    device (a fresh draw without device= fills a CPU tensor: the error a CUDA generator
    raises), and a model's output, which lives on the compute device, may be sampled only
    with such a generator (a CPU generator there raises on a GPU). Yields the names drawn."""
    monkeypatch.setattr(torch, "Generator", AskedGenerator)
    seen = []

    def spy(name, real):
        def draw(*args, generator=None, **kw):
            if generator is not None:
                seen.append(name)
                asked = getattr(generator, "asked", None)
                if name == "multinomial":  # from probabilities on the compute device
                    assert asked is not None, ("sampling with a CPU generator: on a GPU the "
                                               "probabilities are not on the CPU")
                else:  # a fresh tensor, on the CPU unless device= says otherwise
                    where = torch.device(kw.get("device") or "cpu")
                    placed = kw.get("device") is not None
                    assert where == generator.device and (placed or asked is None), \
                        (f"torch.{name} fills a {where} tensor with "
                         + (f"a generator made for the compute device ({asked}; a CUDA "
                            "generator on a GPU)" if asked is not None else "a CPU generator")
                         + ": pass device=generator.device")
            return real(*args, generator=generator, **kw)
        return draw

    for name in ("randperm", "randint", "rand", "randn", "multinomial", "normal", "bernoulli"):
        monkeypatch.setattr(torch, name, spy(name, getattr(torch, name)))
    return seen


def test_every_random_draw_uses_a_generator_on_its_own_device(tmp_path, draws):
    """The tournament drew its pairings with torch.randperm(n, generator=g), g being the
    sampling generator: on a GPU that is a CUDA generator filling a CPU tensor, so
    `FLAGS=--device=cuda bash run.sh` failed at its fourth command (and selfjudge.py
    --mode=raft at its first step). Runs every stage, checking each draw as if on a GPU."""
    run_pipeline(tmp_path, "cpu")
    # the checks ran on the tournaments' pairings, the batch picks and the sampling
    assert {"randperm", "randint", "multinomial"} <= set(draws)


def accelerators():
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return [pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                          reason="no CUDA GPU here")),
            pytest.param("mps", marks=pytest.mark.skipif(not mps, reason="no MPS here"))]


@pytest.mark.parametrize("device", accelerators())
def test_whole_pipeline_on_an_accelerator(tmp_path, draws, device):
    run_pipeline(tmp_path, device)
    assert {"randperm", "randint", "multinomial"} <= set(draws)


# -----------------------------------------------------------------------------
# long prompts

def test_long_prompts_are_dropped_with_a_count_and_do_not_shorten_the_rest(capsys):
    """One prompt too long for two responses of --max_new_tokens beside it used to shrink
    every response to what it left room for (or, past the context, stop the run): on HH
    one 900-token dialogue cut every response to a few tokens. Now it is dropped and
    counted, and the rest keep their length; a setting that no prompt can hold shrinks
    the responses as before, dropping only prompts with no room at all."""
    tok = load_tokenizer(SORT)
    short, long = "sort: 1 2", "sort: " + " ".join("9" * 150)
    kept, n_new = fit_prompts(tok, [short, long, short], 128, 40)
    assert kept == [short, short] and n_new == 40
    assert "dropped 1 of 3 prompts" in capsys.readouterr().out
    mid = "sort: 1 2 3 4 5 6"
    kept, n_new = fit_prompts(tok, [short, mid, long], 128, 100)
    assert kept == [short, mid] and n_new == response_room(tok, mid, 128) < 100
