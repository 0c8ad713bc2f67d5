"""Stage 1 (JSFT): example construction, collation, the schedule, a tiny run and resume.

    python -m pytest tests/test_jsft.py -q     (from the repository root; a few seconds)
"""
import os

import pytest
import torch

import jsft
from conftest import SORT, make_tiny, write_small_sort
from data.task import DataError
from judge import decision_ids, judge_query
from common import load_checkpoint
from data.chat import chat_ids, encode_query, load_tokenizer
from model import IGNORE_INDEX

PAIR = dict(prompt="sort: 3 1 2", chosen="1 2 3", rejected="1 3 2", principle="correctness",
            rationale_chosen="is sorted and complete.", rationale_rejected="swaps 2 and 3.")

# a model small enough that a whole run is about a second
TINY = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--batch_size=8", "--eval_interval=0",
        "--eval_prompts=4", "--device=cpu"]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(SORT)


def targeted(x, y):
    """The (position, token) pairs that carry a loss."""
    return [(i, t) for i, t in enumerate(y) if t != IGNORE_INDEX]


# -----------------------------------------------------------------------------
# examples

def test_sft_example_loss_on_response_and_stop_token_only(tok):
    x, y = jsft.sft_example(tok, "sort: 3 1 2", "1 2 3")
    q = encode_query(tok, "sort: 3 1 2")
    r = tok.encode("1 2 3", add_special_tokens=False).ids
    end = chat_ids(tok)[2]
    assert x == q + r + [end]
    assert y == [IGNORE_INDEX] * len(q) + r + [end]


@pytest.mark.exercise("judge_examples")
def test_judge_examples_both_orders_loss_on_decision_only(tok):
    a_id, b_id = decision_ids(tok)
    (x1, y1), (x2, y2) = jsft.judge_examples(tok, PAIR)
    q1 = judge_query(tok, PAIR["prompt"], PAIR["chosen"], PAIR["rejected"], "correctness")
    q2 = judge_query(tok, PAIR["prompt"], PAIR["rejected"], PAIR["chosen"], "correctness")
    assert x1 == q1 + [a_id] and x2 == q2 + [b_id], (  # chosen first -> A; second -> B
        "judge_examples: (chosen, rejected) shown in that order is answered A, and (rejected, "
        "chosen) is answered B: the judge prompt (judge_query with the pair's principle) "
        "then the decision token")
    assert targeted(x1, y1) == [(len(q1), a_id)] and targeted(x2, y2) == [(len(q2), b_id)], (
        "judge_examples: the loss is on the decision token only (every other target "
        "IGNORE_INDEX), the judge prompt untrained")
    # rationale=True without rationale fields: still the decision only
    no_rat = {k: v for k, v in PAIR.items() if not k.startswith("rationale")}
    assert jsft.judge_examples(tok, no_rat, rationale=True) == jsft.judge_examples(tok, no_rat), (
        "judge_examples(rationale=True) on a pair without rationales: the decision only")


@pytest.mark.exercise("judge_examples")
def test_judge_examples_with_rationale(tok):
    a_id, b_id = decision_ids(tok)
    end = chat_ids(tok)[2]
    for (x, y), decision, letter in zip(jsft.judge_examples(tok, PAIR, rationale=True),
                                        (a_id, b_id), "AB"):
        t = [tok_id for _, tok_id in targeted(x, y)]
        first = next(i for i, v in enumerate(y) if v != IGNORE_INDEX)
        assert all(v != IGNORE_INDEX for v in y[first:]), (  # one stretch, to the end
            "judge_examples(rationale=True): the loss covers the decision and the whole "
            "rationale after it, to the end")
        assert t[0] == decision and t[-1] == end and x[first:] == t, (
            f"judge_examples(rationale=True): the target is the decision ({letter}), then the "
            "rationale, then the stop token")
        text = tok.decode(t[1:], skip_special_tokens=True)
        # the chosen response's rationale follows the letter it is shown under
        other = "B" if letter == "A" else "A"
        assert f"{letter} {PAIR['rationale_chosen']}" in text and \
            f"{other} {PAIR['rationale_rejected']}" in text, (
                "judge_examples(rationale=True): each response's rationale follows the letter "
                f"it is shown under (chosen under {letter} here): {text!r}")


def test_collate_shifts_by_one_and_pads_targets_with_ignore_index():
    examples = [([1, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, 3, 4]), ([5, 6], [IGNORE_INDEX, 6])]
    idx, tgt = jsft.collate(examples, "cpu")
    assert idx.tolist() == [[1, 2, 3], [5, 0, 0]]
    assert tgt.tolist() == [[IGNORE_INDEX, 3, 4], [6, IGNORE_INDEX, IGNORE_INDEX]]


def test_batches_hold_both_orders_of_each_judge_pair_and_the_ratio():
    """pair_orders: every drawn pair brings both of its examples, so the batch answers the
    same two responses "A" and "B"; without it each pair brings one order. Either way the
    judge share is judge_ratio (rounded down to whole pairs) and a batch is a function of
    (seed, step) alone."""
    pairs = [[([10 + i, 1], [IGNORE_INDEX, 1]), ([10 + i, 2], [IGNORE_INDEX, 2])]
             for i in range(50)]
    sft = [([90, 3, 4], [IGNORE_INDEX, 3, 4])] * 7
    for paired in (True, False):
        cfg = jsft.parse_flags(jsft.defaults, ["--batch_size=20", "--judge_ratio=0.7",
                                               "--sft_warmup=0", f"--pair_orders={paired}"])
        (judge, w), (rest, w_sft) = jsft.draw_batch(cfg, 5, 0, pairs, sft)
        assert (w, w_sft) == (cfg.decision_weight, None)        # each part with its weight
        assert len(judge) + len(rest) == 20 and all(x[0] == 90 for x, _ in rest)
        judged = [(x[0], y[1]) for x, y in judge]
        assert len(judged) == 14                                # 0.7 of 20, in whole pairs
        firsts = sorted(p for p, d in judged if d == 1)
        seconds = sorted(p for p, d in judged if d == 2)
        assert len(firsts) == len(seconds) == 7                 # as many "A" as "B"
        assert (firsts == seconds) == paired                    # the same pairs, both ways
        assert jsft.draw_batch(cfg, 5, 0, pairs, sft) == [(judge, w), (rest, w_sft)]


def test_sft_warmup_holds_the_judge_back_for_its_share_of_the_steps():
    """--sft_warmup=0.25 of 100 steps: steps 0-24 are all demonstrations (a judge from
    scratch cannot learn a task it cannot read yet), then the judge_ratio mix."""
    pairs = [[([10 + i, 1], [IGNORE_INDEX, 1]), ([10 + i, 2], [IGNORE_INDEX, 2])]
             for i in range(50)]
    sft = [([90, 3, 4], [IGNORE_INDEX, 3, 4])] * 7
    cfg = jsft.parse_flags(jsft.defaults, ["--batch_size=20", "--max_steps=100",
                                           "--sft_warmup=0.25"])
    judged = [len(jsft.draw_batch(cfg, step, 0, pairs, sft)[0][0]) for step in range(100)]
    assert judged[:25] == [0] * 25 and judged[25:] == [14] * 75


@pytest.mark.exercise("example_loss")
def test_batch_loss_over_parts_equals_one_padded_batch():
    """Padding each part (judge, SFT) on its own is a speed-up, not a change: the loss is
    the same as for the whole batch padded together, every example weighing once."""
    torch.manual_seed(0)
    model = make_tiny()
    judge = [([1, 2, 3, 4, 5, 6, 7, 8], [IGNORE_INDEX] * 7 + [9]),
             ([2, 3, 4, 5, 6, 7, 8, 9], [IGNORE_INDEX] * 7 + [10]),
             ([9, 8, 7, 6, 5, 4, 3, 2], [IGNORE_INDEX] * 7 + [11])]
    sft = [([3, 4, 5], [IGNORE_INDEX, 5, 6]), ([6, 7], [IGNORE_INDEX, 8]),
           ([1, 1, 1, 1], [IGNORE_INDEX] * 4)]  # no target: carries no weight
    idx, tgt = jsft.collate(judge + sft, "cpu")
    whole = jsft.example_loss(model(idx)[0], tgt)
    split = jsft.batch_loss(model, [(judge, None), (sft, None)], "cpu")
    torch.testing.assert_close(split, whole, msg=lambda m: (
        "example_loss averages within each example, then over the examples with a target: "
        f"so a batch in parts (batch_loss) equals it padded whole: {m}"))
    sidx, stgt = jsft.collate(sft, "cpu")
    assert not torch.isclose(split, jsft.example_loss(model(sidx)[0], stgt)), (  # both count
        "example_loss: both parts of a batch count")


@pytest.mark.exercise("example_loss")
def test_decision_weight_splits_a_judge_example_between_decision_and_rationale():
    """With decision_weight w, a judge example's loss is w x (decision's cross-entropy) +
    (1 - w) x (mean over its rationale's tokens); one without a rationale is all decision;
    None is the plain per-example mean."""
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    tgt = torch.tensor([[IGNORE_INDEX, 3, 1, 4, IGNORE_INDEX],         # decision + 2 tokens
                        [IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]])
    ce = lambda t, y: torch.nn.functional.cross_entropy(logits[0, t], torch.tensor(y))  # noqa
    d, r = ce(1, 3), (ce(2, 1) + ce(3, 4)) / 2
    only = torch.nn.functional.cross_entropy(logits[1, 2], torch.tensor(2))
    for w in (0.0, 0.5, 0.9):
        got = jsft.example_loss(logits, tgt, decision_weight=w)
        torch.testing.assert_close(got, ((w * d + (1 - w) * r) + only) / 2, msg=lambda m: (
            f"example_loss(decision_weight={w}): a judge example's loss is w x its first "
            "target's cross-entropy (the decision) + (1 - w) x the mean over the rest (the "
            f"rationale); one with no rationale is all decision; then the mean over examples: "
            f"{m}"))
    plain = jsft.example_loss(logits, tgt)
    torch.testing.assert_close(plain, ((d + 2 * r) / 3 + only) / 2, msg=lambda m: (
        "example_loss without decision_weight: each example's mean over its own target tokens, "
        f"then the mean over the examples (not one mean over every token): {m}"))
    # batch_loss hands each part its own weight: the SFT part keeps the plain mean
    model = make_tiny()
    judge = [([1, 2, 3, 4, 5], [IGNORE_INDEX] * 2 + [9, 10, 11])]
    sft = [([3, 4, 5], [IGNORE_INDEX, 5, 6])]
    (jx, jy), (sx, sy) = jsft.collate(judge, "cpu"), jsft.collate(sft, "cpu")
    want = (jsft.example_loss(model(jx)[0], jy, decision_weight=0.5)
            + jsft.example_loss(model(sx)[0], sy)) / 2
    torch.testing.assert_close(jsft.batch_loss(model, [(judge, 0.5), (sft, None)], "cpu"), want,
                               msg=lambda m: f"batch_loss gives each part its own weight: {m}")
    assert not torch.isclose(jsft.batch_loss(model, [(judge, None), (sft, None)], "cpu"), want), (
        "example_loss: decision_weight changes a judge example's loss")


def test_lr_warmup_then_cosine_to_min_lr():
    cfg = jsft.parse_flags(jsft.defaults, ["--lr=1.0", "--min_lr=0.1", "--warmup_steps=10",
                                           "--max_steps=110"])
    lr = [jsft.lr_at(s, cfg) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lr[:9], lr[1:10]))           # warmup rises
    assert lr[10] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(lr[10:109], lr[11:110]))     # cosine falls
    assert lr[60] == pytest.approx(0.55)                           # halfway: the mean
    assert lr[110] == pytest.approx(0.1) and lr[119] == pytest.approx(0.1)


# -----------------------------------------------------------------------------
# end to end

@pytest.mark.e2e
def test_tiny_run_saves_and_resumes(tmp_path):
    data = write_small_sort(tmp_path / "task")
    out = str(tmp_path / "jsft")
    # the SFT warm-up, like the cosine, is a share of max_steps: resuming with a larger
    # max_steps is another schedule, so this comparison leaves the warm-up out
    flags = TINY + ["--sft_warmup=0"]
    jsft.main(["--data", data, "--max_steps=3", "--out_dir", out] + flags)
    ckpt = os.path.join(out, "ckpt.pt")
    model, tok, meta = load_checkpoint(ckpt)
    assert meta["step"] == 3 and meta["stage"] == "jsft" and meta["optimizer"] is not None
    assert meta["flags"]["max_steps"] == 3 and model.config.n_layer == 1
    assert decision_ids(tok) == decision_ids(load_tokenizer(SORT))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    jsft.main(["--data", data, "--max_steps=5", "--out_dir", out, "--resume"] + flags)
    model, _, meta = load_checkpoint(ckpt)
    assert meta["step"] == 5
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on
    # batches are a function of (seed, step) and the optimizer state is restored, so
    # 3 steps + resume to 5 is the same run as 5 steps straight
    straight = str(tmp_path / "straight")
    jsft.main(["--data", data, "--max_steps=5", "--out_dir", straight] + flags)
    ref = load_checkpoint(os.path.join(straight, "ckpt.pt"))[0].state_dict()
    for k in ref:
        torch.testing.assert_close(after[k], ref[k], atol=1e-6, rtol=0)


def test_malformed_data_names_file_and_line(tmp_path):
    data = write_small_sort(tmp_path / "task", sft=5)
    sft = os.path.join(data, "sft.jsonl")
    with open(sft) as f:
        lines = f.readlines()
    lines[2] = '{"prompt": "sort: 3 1", "response": \n'
    with open(sft, "w") as f:
        f.writelines(lines)
    with pytest.raises(DataError, match=r"sft\.jsonl:3: not valid JSON"):
        jsft.main(["--data", data, "--max_steps=1", "--out_dir", str(tmp_path / "o")] + TINY)
    assert not os.path.exists(tmp_path / "o" / "ckpt.pt")


def test_an_oracle_returning_nan_stops_the_run_before_training(tmp_path):
    """The oracle is only read at the end of jsft.py: a broken one cost the whole run."""
    data = write_small_sort(tmp_path / "task")
    with open(os.path.join(data, "oracle.py"), "w") as f:
        f.write("def score(prompt, response):\n    return float('nan')\n")
    with pytest.raises(DataError, match=r"oracle\.py: score\(.*\) returned nan .*before any "
                                        "training"):
        jsft.main(["--data", data, "--max_steps=1", "--out_dir", str(tmp_path / "o")] + TINY)
    assert not os.path.exists(tmp_path / "o")


def test_decision_weight_outside_0_1_is_refused_before_training(tmp_path):
    with pytest.raises(SystemExit, match=r"--decision_weight=1.5: must be in \[0, 1\]"):
        jsft.main(["--decision_weight=1.5", "--out_dir", str(tmp_path / "o")] + TINY)
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.e2e
def test_plain_sft_with_judge_ratio_zero_runs(tmp_path):
    """`--judge_ratio=0` (plain SFT, the README's comparison) crashed: the batch drew zero
    judge examples from an empty list, and torch.randint refuses an empty range even
    for zero draws. Also the other extreme, judge examples only."""
    data = write_small_sort(tmp_path / "task")
    for ratio in ("0", "1"):
        out = str(tmp_path / f"r{ratio}")
        jsft.main(["--data", data, "--max_steps=2", f"--judge_ratio={ratio}", "--out_dir", out]
                  + TINY)
        assert load_checkpoint(os.path.join(out, "ckpt.pt"))[2]["step"] == 2


@pytest.mark.e2e
def test_bench_times_real_batches_and_saves_nothing(tmp_path, capsys):
    import bench
    data = write_small_sort(tmp_path / "task")
    out = tmp_path / "jsft"
    r = bench.main(["jsft", "--data", data, "--out_dir", str(out)] + TINY)
    assert not out.exists()
    # 8 examples a step: 6 judge examples of ~30 tokens and 2 SFT ones of ~12; padding
    # only adds
    assert 8 * 8 < r["real_tokens_per_step"] <= r["tokens_per_step"] < 8 * 64
    assert r["step_s"] > 0 and "ms per step" in capsys.readouterr().out


def test_bench_peers_load_nanogpt_from_a_checkout_and_name_a_wrong_path(tmp_path, monkeypatch):
    """bench.py sample --nanogpt=DIR times a nanoGPT checkout's GPT beside ours (it is never
    imported otherwise); a folder without model.py is named with what to give instead."""
    import importlib.util
    import bench
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as if transformers were absent
                        lambda n, *a: None if n == "transformers" else find_spec(n, *a))
    cfg = bench.parse_flags(bench.defaults, [f"--nanogpt={tmp_path}", "--layers=1"])
    with pytest.raises(OSError, match=rf"--nanogpt={tmp_path}: no model\.py there"):
        bench.peers(cfg, torch.device("cpu"))
    (tmp_path / "model.py").write_text(
        "import torch\n"
        "class GPTConfig:\n"
        "    def __init__(self, **kw): self.kw = kw\n"
        "class GPT(torch.nn.Module):\n"
        "    def __init__(self, config):\n"
        "        super().__init__(); self.config = config\n")
    [(name, model, _, _)] = bench.peers(cfg, torch.device("cpu"))
    assert name == "nanoGPT GPT"
    assert model.config.kw == dict(block_size=1024, vocab_size=50257, dropout=0.0, bias=True,
                                   n_layer=1, n_head=12, n_embd=768)


@pytest.mark.e2e
def test_the_warm_ups_judge_loss_is_labelled_untrained(tmp_path, capsys):
    """During --sft_warmup the judge is not trained, and its held-out loss (13.5 and 19.4
    on a real run) looked like a broken run to a newcomer: those lines now say why, and
    the lines after the warm-up say nothing extra."""
    data = write_small_sort(tmp_path / "task")
    flags = [f for f in TINY if not f.startswith("--eval_interval")]
    jsft.main(["--data", data, "--out_dir", str(tmp_path / "out"), "--max_steps=4",
               "--eval_interval=1", "--sft_warmup=0.5"] + flags)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    assert [("not trained yet" in x) for x in lines] == [True, True, False], lines


# -----------------------------------------------------------------------------
# jsft.py's verdict on its judge and policy

def test_verdict_says_plainly_when_the_judge_is_near_chance_weak_or_ready():
    """A judge at chance used to end JSFT with numbers only, and stage 2 then trained on
    nothing. The verdict names the state and what to try."""
    own = lambda agree, flips: dict(decided=300, agreement=agree, by_position=flips)  # noqa
    assert "NEAR CHANCE (58.7% agreement on the policy's own pairs, decisions by position 58.7%)" \
        in jsft.verdict(own(0.587, 0.587))[0]
    assert "NEAR CHANCE" in jsft.verdict(own(0.9, 0.44))[0]   # follows the position
    assert "WEAK (73.0% agreement" in jsft.verdict(own(0.73, 0.08))[0]
    assert "WEAK" in jsft.verdict(own(0.9, 0.2))[0]
    assert "ready for self-training" in jsft.verdict(own(0.92, 0.07))[0]
    # without an oracle (or no pair it tells apart): the held-out labels
    labels = dict(decided=0, label_agreement=0.55, label_by_position=0.1, label_pairs=256)
    assert "NEAR CHANCE (55.0% agreement on the held-out labelled pairs" \
        in jsft.verdict(labels)[0]
    assert jsft.verdict({}) == []


def test_verdict_says_when_selfjudge_will_refuse_the_judge():
    """The short class run once ended JSFT with "WEAK ... expect a small gain" and then
    selfjudge.py refused the judge on the held-out labels (78.1%, flips 35.9%): the verdict
    now says so first, with the same numbers and thresholds as the refusal."""
    r = dict(decided=300, agreement=0.732, by_position=0.301, label_agreement=0.781,
             label_by_position=0.359, label_pairs=256)
    weak, refused = jsft.verdict(r)
    assert "WEAK (73.2% agreement" in weak
    assert refused == (
        "verdict: selfjudge.py will refuse this judge: on the 256 held-out labelled pairs it "
        "agrees with the labels on 78.1% and its decisions follow the position on 35.9%, "
        "where self-training needs at least 65% and at most 35%. Train it further "
        "(--max_steps), or pass --allow_weak_judge to selfjudge.py to see what happens.")
    assert len(jsft.verdict(dict(r, label_by_position=0.34))) == 1   # passes the gate
    assert len(jsft.verdict(dict(r, label_by_position=0.1, label_agreement=0.6))) == 2


def test_verdict_says_when_the_policy_learned_little():
    lines = jsft.verdict(dict(oracle_score=0.075, fully_right=0.0))
    assert lines == ["verdict: the policy has learned little of the task (oracle score 0.075, "
                     "fully right 0.0%); self-training refines a policy, it does not teach "
                     "one: train longer."]
    assert jsft.verdict(dict(oracle_score=0.8, fully_right=0.45)) == []
