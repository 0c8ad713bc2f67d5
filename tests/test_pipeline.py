"""The whole pipeline as a user runs it: every stage on each device this machine has, with
every random draw checked against its generator's device; two processes under torchrun
against one; and the real-model recipe (a GPT-2 folder on HH-RLHF data), no oracle anywhere.

    python -m pytest tests/test_pipeline.py -q     (from the repository root; ~15 s on a CPU)
"""
import gzip
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer

import evaluate
import jsft
import sample
import selfjudge
from common import load_checkpoint
from conftest import ROOT, SORT, make_tiny, write_small_sort
from data import hh
from data.chat import add_chat_tokens, load_tokenizer
from data.task import DataError
from judge import decision_ids, fit_prompts, judge_query, response_room
from sample import rows_per_chunk

# a tiny JSFT model and a two-step self-training run, on any device
TINY_JSFT = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--batch_size=8", "--max_steps=2",
             "--eval_interval=0", "--eval_prompts=4", "--block_size=256"]
TINY_SJ = ["--max_steps=2", "--batch_size=4", "--eval_interval=1", "--eval_prompts=4",
           "--max_new_tokens=8", "--cutoff=keep", "--min_confidence=0", "--allow_weak_judge"]
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


@pytest.mark.e2e
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


@pytest.mark.e2e
@pytest.mark.parametrize("device", accelerators())
def test_whole_pipeline_on_an_accelerator(tmp_path, draws, device):
    run_pipeline(tmp_path, device)
    assert {"randperm", "randint", "multinomial"} <= set(draws)


# -----------------------------------------------------------------------------
# data parallel: two processes under torchrun against one

@pytest.mark.e2e
def test_two_processes_under_torchrun_train_the_model_one_process_trains(tmp_path):
    """torchrun --standalone --nproc_per_node=2 jsft.py, gloo on the CPU: every rank draws
    the same batch and takes its share, here uneven (5 examples: 3 and 2; one rank has
    judge and SFT examples, the other judge examples only), over 2 micro-batches a step,
    rank 0 alone evaluating and saving in the middle. The model and AdamW's moments (which,
    unlike its steps, see a gradient's scale) match one process's with the same flags."""
    data = write_small_sort(tmp_path / "task")
    flags = ["--data", data, "--n_layer=1", "--n_embd=32", "--n_head=2", "--batch_size=5",
             "--judge_ratio=0.8", "--grad_accum=2", "--max_steps=3", "--eval_interval=2",
             "--eval_prompts=0", "--device=cpu",
             "--grad_clip=1e9"]  # unclipped, so that AdamW's moments see a gradient's scale
    jsft.main(flags + ["--out_dir", str(tmp_path / "one")])
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", os.path.join(ROOT, "jsft.py")]
                         + flags + ["--out_dir", str(tmp_path / "two")], cwd=ROOT,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("done in") == 1  # rank 1 trains in silence
    one, two = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("one", "two"))
    assert two["meta"]["step"] == 3
    for k, state in one["optimizer"]["state"].items():
        for moment in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(two["optimizer"]["state"][k][moment], state[moment],
                                       atol=1e-6, rtol=1e-3,
                                       msg=lambda m, k=k, moment=moment: f"{moment} {k}: {m}")
    for k, w in one["model"].items():
        torch.testing.assert_close(two["model"][k], w, atol=1e-6, rtol=0,
                                   msg=lambda m, k=k: f"{k}: {m}")


# -----------------------------------------------------------------------------
# the real-model recipe: a GPT-2 folder on HH-RLHF, no oracle anywhere

GPT2 = os.path.join(os.path.dirname(__file__), "fixtures", "tiny-gpt2")  # context 64
TEST_FRAC, PROMPTS_FRAC = 0.2, 0.3  # a tiny file needs larger held-out splits


def hh_line(turns, chosen, rejected):
    prompt = "".join(f"\n\nHuman: {h}\n\nAssistant:" + (f" {a}" if a else "")
                     for h, a in turns)
    return json.dumps({"chosen": f"{prompt} {chosen}", "rejected": f"{prompt} {rejected}"})


def write_hh(path):
    """A hand-made HH-RLHF file: 48 short dialogues, a line that does not parse, and one
    long dialogue for each split (test, prompts, pairs), too long for a 64-token context.
    Returns the long prompts by split."""
    good, bad = ["Hello!", "Sure.", "Yes.", "Hi!"], ["No.", "Go away", "Meh", "Ugh"]
    lines = [hh_line([(f"hi {i}", None)], good[i % 4], bad[(i // 4) % 4]) for i in range(48)]
    lines.append("{not json")
    long, i = {}, 0
    while len(long) < 3:  # one long dialogue per split, as data.hh's hash sends it
        turns = [(f"tell me a long story {i}", "Once upon a time, a judge"), ("and then?", None)]
        prompt = "".join(f"\n\nHuman: {h}\n\nAssistant:" + (f" {a}" if a else "")
                         for h, a in turns)
        u = hh.bucket(prompt, 1337)
        split = "test" if u < TEST_FRAC else "prompts" if u < TEST_FRAC + PROMPTS_FRAC else "pairs"
        if split not in long:
            long[split] = prompt
            lines.append(hh_line(turns, "It was fine.", "No."))
        i += 1
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return long


@pytest.mark.e2e
def test_real_model_recipe_runs_every_stage_without_an_oracle(tmp_path, capsys):
    """README, "Real models": import HH-RLHF, JSFT from a GPT-2 folder (its tokenizer plus
    the chat tokens, the embedding resized), SELF-JUDGE, the DPO baseline, RAFT, the judge
    on held-out labels, and the results table, self-judged: no oracle.py anywhere. A
    dialogue too long for the context is kept whole by the import, then refused naming
    its line where it would enter the model (a JSFT example, a self-training or test
    prompt, an offline DPO pair), or with --skip_bad_lines dropped with a count."""
    long = write_hh(tmp_path / "train.jsonl.gz")
    task = str(tmp_path / "hh")
    hh.main([str(tmp_path / "train.jsonl.gz"), task, "--test_frac", str(TEST_FRAC),
             "--prompts_frac", str(PROMPTS_FRAC)])
    assert not os.path.exists(os.path.join(task, "oracle.py"))
    for split, prompt in long.items():  # imported whole
        with open(os.path.join(task, split + ".jsonl")) as f:
            assert prompt in [json.loads(line)["prompt"] for line in f]
    capsys.readouterr()

    # JSFT from the GPT-2 folder
    out = lambda name: str(tmp_path / name)  # noqa: E731
    flags = ["--data", task, "--init", GPT2, "--max_steps=2", "--batch_size=4",
             "--eval_interval=0", "--device=cpu"]
    with pytest.raises(DataError, match=r"sft\.jsonl:\d+: prompt \+ response is \d+ tokens"):
        jsft.main(flags + ["--out_dir", out("refused")])
    jsft.main(flags + ["--out_dir", out("jsft"), "--skip_bad_lines"])
    said = capsys.readouterr().out
    assert "vocab 303" in said  # GPT-2's 300 tokens + the 3 chat tokens
    assert re.search(r"dropped 1 of .*sft\.jsonl:\d+: prompt \+ response", said)
    assert re.search(r"dropped 1 of .*pairs\.jsonl:\d+: judge prompt \+ decision", said)
    ckpt = os.path.join(out("jsft"), "ckpt.pt")
    model, tok, _ = load_checkpoint(ckpt)
    assert model.config.block_size == 64 and decision_ids(tok) == (32, 33)

    # self-training, the DPO baseline, and rejection-sampling fine-tuning
    sj = ["--data", task, "--init", ckpt, "--max_steps=2", "--batch_size=4", "--max_new_tokens=4",
          "--eval_interval=1", "--min_confidence=0", "--cutoff=keep", "--device=cpu",
          "--allow_weak_judge"]  # a 2-step judge
    for mode in ("onpolicy", "offline", "raft"):
        if mode == "onpolicy":  # a prompt too long to judge: refused naming its line
            with pytest.raises(DataError, match=r"prompts\.jsonl:\d+: its judge prompt"):
                selfjudge.main(sj + ["--out_dir", out("refused_sj")])
        selfjudge.main(sj + [f"--mode={mode}", "--out_dir", out(mode), "--skip_bad_lines"])
        said = capsys.readouterr().out
        if mode == "offline":  # the long pair of pairs.jsonl
            assert "dropped 1 of" in said and "prompt + longer response" in said
        else:  # the long prompt of prompts.jsonl
            assert re.search(r"dropped 1 of \d+ lines .*prompts\.jsonl:\d+: its judge", said)
        assert re.search(r"dropped 1 of \d+ lines .*test\.jsonl:\d+: its judge prompt", said)
        assert load_checkpoint(os.path.join(out(mode), "ckpt.pt"))[2]["step"] == 2

    # the judge on held-out labels, and the results table: self-judged
    evaluate.main(["--data", task, "--ckpt", ckpt, "--device=cpu", "--skip_bad_lines"])
    assert "agreement with the task's labels" in capsys.readouterr().out
    evaluate.main(["--data", task, "--report", ",".join(out(d) for d in ("jsft", "offline",
                                                                         "onpolicy")),
                   "--report_samples=2", "--max_new_tokens=4", "--device=cpu",
                   "--skip_bad_lines"])
    said = capsys.readouterr().out
    assert re.search(r"dropped 1 of \d+ lines .*test\.jsonl:\d+: its judge", said)
    assert "SELF-JUDGED by jsft" in said and "not an independent evaluation" in said
    table = said[said.index("judged win rate"):].splitlines()[1:]
    assert [row.split()[0] for row in table] == ["jsft", "offline", "onpolicy", "onpolicy"]
    assert table[0].split()[1:3] == ["50.0%", "100.0%"]  # JSFT against itself: all ties


def test_gpt2_tokenizer_gives_single_token_decisions_and_keeps_its_ids():
    """GPT-2's own tokenizer (50257 tokens) with the chat tokens added: "A" and "B" are one
    token each after the judge prompt of an HH dialogue, and GPT-2's ids do not move."""
    raw = gzip.decompress(open(os.path.join(os.path.dirname(__file__), "fixtures",
                                            "gpt2-tokenizer", "tokenizer.json.gz"), "rb").read())
    tok = add_chat_tokens(Tokenizer.from_str(raw.decode("utf-8")))
    assert tok.get_vocab_size() == 50260 and decision_ids(tok) == (32, 33)
    context = "\n\nHuman: What is a judge?\n\nAssistant:"
    q = judge_query(tok, context, "Someone who decides.", "No idea.")
    assert tok.encode(tok.decode(q, skip_special_tokens=False) + "A").ids == q + [32]


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
    assert "dropped 1 of 3 lines too long for the context (128 tokens): prompts:2: its " \
        "judge prompt with two responses of 40 tokens" in capsys.readouterr().out
    mid = "sort: 1 2 3 4 5 6"
    kept, n_new = fit_prompts(tok, [short, mid, long], 128, 100)
    assert kept == [short, mid] and n_new == response_room(tok, mid, 128) < 100


@pytest.mark.exercise("response_logps")
def test_no_gradient_passes_hold_at_most_a_gigabyte_of_logits(monkeypatch):
    """jsft.py's held-out loss and selfjudge.py's held-out log-probabilities ran 128 rows a
    pass: with GPT-2's vocabulary and 1024-token rows, 26 GB of float32 logits and as much
    again of log-softmax, out of memory on a 24 GB GPU at the first evaluation. The sort
    task keeps its 128 rows, and a chunk changes only the memory, not the numbers."""
    assert rows_per_chunk(40, 343, 128) == 128, "small logits: every row in one chunk"
    assert 1 <= rows_per_chunk(1024, 50260, 128) <= sample.LOGITS_BUDGET / (1024 * 50260), (
        "GPT-2's logits: as many rows as fit in LOGITS_BUDGET, at least one")
    model = make_tiny()
    queries = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]] * 3
    responses = [[11, 12], [13], [14, 15, 16], [17, 18]] * 3
    whole = sample.batched_logps(model, queries, responses, "cpu")
    monkeypatch.setattr(sample, "LOGITS_BUDGET", 2 * 7 * model.config.vocab_size)  # 2 rows
    torch.testing.assert_close(
        sample.batched_logps(model, queries, responses, "cpu"), whole, msg=lambda m: (
            f"batched_logps in chunks of 2 rows equals one pass (response_logps scores each "
            f"row on its own: padding never leaks): {m}"))
