"""Stage 2 (self-training): the DPO-style losses, response log-probs, pairs from
judgments, and tiny on-policy, offline and LoRA runs end to end.

    python -m pytest tests/test_selfjudge.py -q     (from the repository root; seconds)
"""
import contextlib
import copy
import functools
import json
import math
import os

import pytest
import torch

import evaluate
import jsft
import judge
import selfjudge
from conftest import SORT, make_tiny, write_small_sort
from data.task import load_task
from common import load_checkpoint, save_checkpoint
from data.chat import encode_query, load_tokenizer
from judge import fit_prompts
from model import GPT, GPTConfig, Linear
from sample import response_logps, sample_responses
from selfjudge import dpo_loss, make_pairs

TINY_JSFT = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--batch_size=8", "--eval_interval=0",
             "--eval_prompts=4", "--block_size=256", "--device=cpu"]
# an untrained judge is never confident: --min_confidence=0 lets its pairs train
TINY_SJ = ["--max_steps=2", "--batch_size=4", "--eval_interval=1", "--eval_prompts=4",
           "--max_new_tokens=8", "--cutoff=keep", "--min_confidence=0", "--device=cpu",
           "--allow_weak_judge"]  # an untrained judge is near chance
STEP_KEYS = {"step", "loss", "margin", "reward_acc", "logp_chosen", "logp_rejected"}


@pytest.fixture(scope="module")
def task_and_ckpt(tmp_path_factory):
    """A small slice of the sort task and a fresh checkpoint in the JSFT stage's place and
    TINY_JSFT's shape. It is saved directly, not trained by jsft.py, so a broken JSFT
    exercise (judge_examples, example_loss) fails its own tests and not every test of
    stage 2 too; two JSFT steps, which this used to run, barely move a fresh model
    anyway (the learning rate is still warming up)."""
    root = tmp_path_factory.mktemp("selfjudge")
    data = write_small_sort(root / "task")
    tok = load_tokenizer(data)
    torch.manual_seed(1337)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=256, n_layer=1, n_head=2,
                          n_embd=32, pos="rope", gelu="exact"))
    ckpt = str(root / "jsft" / "ckpt.pt")
    save_checkpoint(ckpt, model, tok, dict(step=0, stage="jsft", flags=dict(judge_ratio=0.7)))
    return data, ckpt


def run_selfjudge(task_and_ckpt, out, *extra):
    data, ckpt = task_and_ckpt
    selfjudge.main(["--data", data, "--init", ckpt, "--out_dir", str(out)] + TINY_SJ
                   + list(extra))
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return load_checkpoint(os.path.join(out, "ckpt.pt")), rows


# -----------------------------------------------------------------------------
# the loss

@pytest.mark.exercise("dpo_loss")
def test_dpo_loss_known_answers_at_equal_log_ratios():
    pc, pr = torch.tensor([-3.0, -10.0]), torch.tensor([-5.0, -2.0])
    rc, rr = pc - 0.7, pr - 0.7  # both log-ratios 0.7: no preference yet
    beta = 0.25
    for kind, expected in (("sigmoid", math.log(2)), ("hinge", 1.0),
                           ("ipo", 1 / (4 * beta ** 2))):
        loss, _, _ = dpo_loss(pc, pr, rc, rr, beta, kind)
        assert loss.item() == pytest.approx(expected, rel=1e-6), (
            f"dpo_loss(kind={kind!r}): with equal log-ratios (h = 0) the loss is "
            f"{expected:.4f} (log 2, 1 and 1/(4 beta^2) for sigmoid, hinge and ipo), "
            f"got {loss.item():.4f}")


@pytest.mark.exercise("dpo_loss")
def test_dpo_loss_known_answers_away_from_a_zero_margin():
    """At h = 0 (the test above) the sigmoid loss is log 2 whatever beta does, so beta
    left out of the sigmoid, or put outside it, passes there. Here h = 2 and -1."""
    pc, pr = torch.tensor([-3.0, -4.0]), torch.tensor([-5.0, -2.0])
    rc, rr = torch.tensor([-4.0, -4.0]), torch.tensor([-4.0, -3.0])  # h = 1 + 1, 0 - 1
    beta = 0.5
    want = dict(sigmoid=(math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 2,
                hinge=(0.0 + 1.5) / 2,                   # max(0, 1 - beta h): 0 and 1.5
                ipo=((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)  # (h - 1/(2 beta))^2: 1 and 4
    formula = dict(sigmoid="-log sigmoid(beta * h)", hinge="max(0, 1 - beta * h)",
                   ipo="(h - 1 / (2 beta))^2")
    for kind, expected in want.items():
        loss, _, _ = dpo_loss(pc, pr, rc, rr, beta, kind)
        assert loss.item() == pytest.approx(expected, rel=1e-6), (
            f"dpo_loss(kind={kind!r}, beta={beta}) at h = [2, -1]: {loss.item():.6f}, "
            f"expected the mean of {formula[kind]} = {expected:.6f}")


@pytest.mark.exercise("dpo_loss")
def test_dpo_loss_large_margin():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (0.0, -200.0, 0.0, 0.0))  # h = 200
    sigmoid, _, _ = dpo_loss(pc, pr, rc, rr, 0.1, "sigmoid")
    hinge, _, _ = dpo_loss(pc, pr, rc, rr, 0.1, "hinge")
    assert 0 <= sigmoid.item() < 1e-8, (
        f"dpo_loss(sigmoid) at beta * h = 20 is -log sigmoid(20) ~ 2e-9, finite and >= 0 "
        f"(F.logsigmoid, not log(sigmoid(x)), stays exact): got {sigmoid.item()}")
    assert hinge.item() == 0.0, (  # beta * h = 20 is past the margin of 1
        f"dpo_loss(hinge) is max(0, 1 - beta * h): 0 at beta * h = 20, got {hinge.item()}")
    just_short, _, _ = dpo_loss(pc, torch.tensor([-5.0]), rc, rr, 0.1, "hinge")  # beta*h=0.5
    assert just_short.item() == pytest.approx(0.5), (
        f"dpo_loss(hinge) is max(0, 1 - beta * h): 0.5 at beta * h = 0.5, got "
        f"{just_short.item()}")
    ipo, _, _ = dpo_loss(pc, torch.tensor([-5.0]), rc, rr, 0.1, "ipo")  # h = 1/(2 beta)
    assert ipo.item() == pytest.approx(0.0), (
        f"dpo_loss(ipo) is (h - 1/(2 beta))^2, h not scaled by beta: 0 at h = 1/(2 beta) = 5,"
        f" got {ipo.item()}")


@pytest.mark.exercise("dpo_loss")
def test_dpo_rewards_are_beta_log_ratios_and_detached():
    pc = torch.tensor([-1.0, -2.0], requires_grad=True)
    pr = torch.tensor([-3.0, -1.0], requires_grad=True)
    rc, rr = torch.tensor([-2.0, -2.5]), torch.tensor([-2.0, -1.5])
    loss, rw_c, rw_r = dpo_loss(pc, pr, rc, rr, beta=0.5)
    for got, want, which in ((rw_c, [0.5, 0.25], "chosen"), (rw_r, [-0.5, 0.25], "rejected")):
        torch.testing.assert_close(got.detach(), torch.tensor(want), msg=lambda m: (
            f"dpo_loss's {which} rewards are beta * (log pi - log ref) of the {which} "
            f"responses, expected {want}: {m}"))
    assert loss.requires_grad, "dpo_loss's loss must keep its graph: the policy trains on it"
    assert not rw_c.requires_grad and not rw_r.requires_grad, (
        "dpo_loss's rewards are detached (.detach()): they are logged, never trained on")
    loss.backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all(), (  # raise chosen, lower rejected
        f"dpo_loss's gradient must raise the chosen log-probabilities and lower the rejected "
        f"ones (h = chosen log-ratio - rejected log-ratio, not the reverse): d loss / d chosen "
        f"{pc.grad.tolist()}, d loss / d rejected {pr.grad.tolist()}")


@pytest.mark.exercise("dpo_loss")
def test_dpo_loss_unknown_kind_raises():
    x = torch.zeros(1)
    try:
        dpo_loss(x, x, x, x, 0.1, "hingee")
    except ValueError as e:
        assert "unknown loss" in str(e), (
            f"dpo_loss's error for an unknown kind starts 'unknown loss' (its docstring): {e}")
    else:
        pytest.fail("dpo_loss(kind='hingee') must raise ValueError('unknown loss ...') (its "
                    "docstring): a typo in --loss must not train with some other loss")


@pytest.mark.exercise("dpo_loss", needs=("response_logps",))
def test_one_step_raises_chosen_minus_rejected_log_ratio():
    ref = make_tiny().requires_grad_(False)
    policy = copy.deepcopy(ref).train().requires_grad_(True)
    queries, chosen, rejected = [[1, 2, 3], [4, 5]], [[6, 7, 8], [9]], [[10, 11], [12, 13, 14]]

    def margin():
        pol, _ = response_logps(policy, queries * 2, chosen + rejected, "cpu")
        with torch.no_grad():
            ref_lp, _ = response_logps(ref, queries * 2, chosen + rejected, "cpu")
        h = (pol[:2] - ref_lp[:2]) - (pol[2:] - ref_lp[2:])
        return pol, ref_lp, h

    pol, ref_lp, h = margin()
    assert h.abs().max().item() == 0.0, "a policy equal to its reference has h = 0"
    loss, _, _ = dpo_loss(pol[:2], pol[2:], ref_lp[:2], ref_lp[2:], 0.1)
    assert loss.item() == pytest.approx(math.log(2)), (
        f"dpo_loss with the policy equal to the reference is log 2, got {loss.item():.4f}")
    opt = torch.optim.SGD(policy.parameters(), lr=1e-2)
    loss.backward()
    opt.step()
    _, _, h = margin()
    assert (h > 0).all(), (f"one SGD step on dpo_loss must raise log pi(chosen) - log "
                           f"pi(rejected) against the reference (h > 0), got h = {h.tolist()}")


# -----------------------------------------------------------------------------
# response log-probabilities

def manual_logp(model, q, r):
    logits, _ = model(torch.tensor([q + r]))
    lp = torch.log_softmax(logits[0], -1)
    return sum(lp[len(q) - 1 + t, tok].item() for t, tok in enumerate(r))


@pytest.mark.exercise("response_logps")
def test_response_logps_equal_manual_sum(tiny):
    q, r = [1, 2, 3, 4], [5, 6, 7]
    summed, mean = response_logps(tiny, [q], [r], "cpu")
    assert summed.dtype == torch.float32 and summed.shape == (1,), (
        f"response_logps returns float32 (N,) sums, got {summed.dtype} {tuple(summed.shape)}")
    want = manual_logp(tiny, q, r)
    assert summed.item() == pytest.approx(want, abs=1e-4), (
        f"response_logps: the sum over the response's tokens of log p(token | everything "
        f"before it), the logits at position t scoring token t + 1 (targets shifted by one): "
        f"{want:.4f}, got {summed.item():.4f}")
    assert mean.item() == pytest.approx(summed.item() / 3, abs=1e-5), (
        f"response_logps' mean divides by the response's length (3 tokens), not by every "
        f"position: {summed.item() / 3:.4f}, got {mean.item():.4f}")


@pytest.mark.exercise("response_logps")
def test_response_logps_score_the_stop_token(tiny):
    q, r, end = [1, 2, 3], [5, 6], 9
    without, _ = response_logps(tiny, [q], [r], "cpu")
    with_end, mean = response_logps(tiny, [q], [r + [end]], "cpu")
    logits, _ = tiny(torch.tensor([q + r]))
    lp_end = torch.log_softmax(logits[0, -1], -1)[end].item()
    assert (with_end - without).item() == pytest.approx(lp_end, abs=1e-4), (
        "response_logps scores the stop token, the response's last token, like any other")
    assert mean.item() == pytest.approx(with_end.item() / 3, abs=1e-5), (  # 3 response tokens
        "response_logps' mean counts the stop token among the response's tokens")


@pytest.mark.exercise("response_logps")
def test_response_logps_padding_does_not_leak(tiny):
    queries = [[1, 2], [3, 4, 5, 6, 7], [8]]
    responses = [[9, 10, 11, 12, 13, 14], [15], [16, 17]]
    batched, batched_mean = response_logps(tiny, queries, responses, "cpu")
    for i, (q, r) in enumerate(zip(queries, responses)):
        alone, alone_mean = response_logps(tiny, [q], [r], "cpu")
        for got, want, what in ((batched, alone, "sum"), (batched_mean, alone_mean, "mean")):
            torch.testing.assert_close(got[i], want[0], atol=1e-4, rtol=0, msg=lambda m: (
                f"response_logps: row {i}'s {what} in a right-padded batch must equal it "
                f"alone (the mask covers its response's tokens only, never padding): {m}"))


# -----------------------------------------------------------------------------
# pairs from judgments

def s(ids, stopped=True):
    return dict(ids=list(ids), text=" ".join(map(str, ids)), stopped=stopped)


@pytest.mark.exercise("make_pairs")
def test_make_pairs_winner_is_chosen():
    a, b = [s([1, 2]), s([3, 4])], [s([5]), s([6])]
    pairs, skipped = make_pairs(["p", "q"], a, b, [0.8, 0.3])
    assert skipped == dict(identical=0, undecided=0, cut_off=0), (
        f"make_pairs skips nothing from two decided pairs of different samples: {skipped}")
    assert [(x["prompt"], x["chosen"]["ids"], x["rejected"]["ids"]) for x in pairs] == \
        [("p", [1, 2], [5]), ("q", [6], [3, 4])], \
        "make_pairs: the winner (a when p_a > 0.5, else b) must be `chosen`"
    assert [x["confidence"] for x in pairs] == pytest.approx([0.8, 0.7]), (
        "make_pairs: each pair's confidence is max(p, 1 - p)")


@pytest.mark.exercise("make_pairs")
def test_make_pairs_skips_identical_and_undecided():
    a = [s([1, 2]), s([3]), s([4]), s([5]), s([7])]
    b = [s([1, 2]), s([9]), s([8]), s([6]), s([8])]
    p = [0.9, 0.5, 0.55, 0.35, 0.65]
    pairs, skipped = make_pairs(list("abcde"), a, b, p)
    rule = ("make_pairs skips and counts identical samples (a: same ids, p 0.9) and judgments "
            "of exactly 0.5 (b) as undecided, each pair once")
    assert skipped == dict(identical=1, undecided=1, cut_off=0), f"{rule}: {skipped}"
    assert [x["prompt"] for x in pairs] == ["c", "d", "e"], rule
    # min_confidence: |2p - 1| must reach it (0.1 and 0.3 against 0.2)
    pairs, skipped = make_pairs(list("abcde"), a, b, p, min_confidence=0.2)
    rule = ("make_pairs with min_confidence=0.2: a judgment with |2p - 1| below it (c: 0.1) is "
            "undecided too; d and e (0.3) are kept")
    assert skipped == dict(identical=1, undecided=2, cut_off=0), f"{rule}: {skipped}"
    assert [x["prompt"] for x in pairs] == ["d", "e"], rule


@pytest.mark.exercise("make_pairs")
def test_make_pairs_cutoff_drop_or_keep():
    a = [s([1], stopped=False), s([2]), s([3])]
    b = [s([4]), s([5], stopped=False), s([6])]
    pairs, skipped = make_pairs(list("abc"), a, b, [0.9, 0.1, 0.9], cutoff="drop")
    assert [x["prompt"] for x in pairs] == ["c"] and skipped["cut_off"] == 2, (
        "make_pairs(cutoff='drop') drops, and counts, a pair when either sample was cut off "
        f"(stopped False), the winner or the loser: kept {[x['prompt'] for x in pairs]}")
    pairs, skipped = make_pairs(list("abc"), a, b, [0.9, 0.1, 0.9], cutoff="keep")
    assert [x["prompt"] for x in pairs] == ["a", "b", "c"] and skipped["cut_off"] == 0, (
        "make_pairs(cutoff='keep') keeps pairs with cut-off samples")


# -----------------------------------------------------------------------------
# the wiring of a self-training step: who judges, and which way the step pulls

def test_the_judge_is_the_frozen_reference_unless_judge_is_current():
    policy, ref = make_tiny(seed=1), make_tiny(seed=2)
    as_reference, as_judge = selfjudge.frozen_models(policy, ref, "reference")
    with as_judge() as j, as_reference() as r:
        assert j is ref and r is ref, ("selfjudge.frozen_models: the judge must be the "
                                       "frozen reference (the JSFT model), not the policy")
    _, as_judge = selfjudge.frozen_models(policy, ref, "current")
    with as_judge() as j:
        assert j is policy  # the ablation: the policy judges itself
    lora = make_tiny(seed=1, lora_rank=2)  # LoRA: the reference is the adapters switched off
    adapters = [m for m in lora.modules() if isinstance(m, Linear) and m.rank > 0]
    _, as_judge = selfjudge.frozen_models(lora, None, "reference")
    with as_judge() as j:
        assert j is lora and not any(m.lora_enabled for m in adapters), (
            "selfjudge.frozen_models: under LoRA the judge is the policy with its adapters off")
    assert all(m.lora_enabled for m in adapters)


def longer_is_better(seen):
    """A stand-in for judge_by_principles with a known preference, the longer text (by
    characters) winning with p = 0.9; it records the model it was handed."""
    def judge_fn(model, tok, contexts, a, b, principles=None):
        seen.append(model)
        p = [0.5 if len(x) == len(y) else 0.9 if len(x) > len(y) else 0.1 for x, y in zip(a, b)]
        return torch.tensor(p), torch.zeros(len(p), dtype=torch.bool)
    return judge_fn


def log_ratio_margins(policy, ref, tok, pairs):
    """h per pair: (log pi - log ref)(chosen) - (log pi - log ref)(rejected)."""
    q = [encode_query(tok, x["prompt"]) for x in pairs] * 2
    r = [x["chosen"]["ids"] for x in pairs] + [x["rejected"]["ids"] for x in pairs]
    with torch.no_grad():
        d = response_logps(policy, q, r, "cpu")[0] - response_logps(ref, q, r, "cpu")[0]
    return d[:len(pairs)] - d[len(pairs):]


@pytest.mark.exercise("dpo_loss",
                       needs=("make_pairs", "response_logps", "sample_next",
                              "decode_loop", "cached_attention"))
def test_a_self_training_step_moves_the_policy_towards_the_judges_choice(monkeypatch):
    """One on-policy step as main() wires it, with a stand-in judge that prefers the longer
    response: the frozen reference judges, every pair's chosen response is the one the judge
    preferred, and the step raises the chosen response's log-ratio against the rejected
    one. Swapping chosen and rejected anywhere (make_pairs, preference_loss, dpo_loss)
    pulls the other way, which the end-to-end runs, checking only that numbers are finite
    and weights moved, never see."""
    tok = load_tokenizer(SORT)
    ref = make_tiny(vocab_size=tok.get_vocab_size(), block_size=96, n_layer=1)
    ref.requires_grad_(False)
    policy = copy.deepcopy(ref).requires_grad_(True).train()
    cfg = selfjudge.parse_flags(selfjudge.defaults, ["--batch_size=16", "--cutoff=keep",
                                                     "--lr=1e-3", "--warmup_steps=0"])
    setup = selfjudge.Setup(cfg, policy, *selfjudge.frozen_models(policy, ref, cfg.judge), tok,
                            prompts=[f"sort: {i} 3 1" for i in range(16)], n_new=8,
                            principles=[None])
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    seen = []
    monkeypatch.setattr(selfjudge, "judge_by_principles", longer_is_better(seen))
    drawn = selfjudge.onpolicy_pairs(setup, torch.Generator().manual_seed(0))
    pairs = drawn.examples
    assert seen and all(m is ref for m in seen), ("selfjudge.onpolicy_pairs: the frozen "
                                                  "reference must judge (setup.as_judge)")
    assert len(pairs) >= 4, f"make_pairs kept fewer than 4 of 16 pairs: {drawn.skipped}"
    assert all(len(x["chosen"]["text"]) > len(x["rejected"]["text"]) for x in pairs), (
        "make_pairs: the response the judge preferred (p > 0.5 for a) must be `chosen`")
    assert log_ratio_margins(policy, ref, tok, pairs).abs().max() == 0, (
        "response_logps: the policy and its copy, the reference, score alike (h = 0)")
    stats = selfjudge.learn(setup, opt, pairs, step=0)
    h = log_ratio_margins(policy, ref, tok, pairs)
    assert h.mean() > 0 and stats["loss"] == pytest.approx(math.log(2), rel=1e-4), (
        f"selfjudge.preference_loss: after a step on the judge's pairs the policy must favour "
        f"the chosen responses more than the reference does (mean h {h.mean():.2e} > 0); "
        f"h < 0 means chosen and rejected were swapped on the way to dpo_loss")


@pytest.mark.exercise("dpo_loss", needs=("response_logps",))
def test_preference_loss_passes_chosen_as_chosen():
    """preference_loss on a policy that differs from the reference equals dpo_loss on the
    log-probabilities of (chosen, rejected) in that order."""
    tok = load_tokenizer(SORT)
    policy = make_tiny(vocab_size=tok.get_vocab_size(), block_size=64, n_layer=1, seed=1)
    ref = make_tiny(vocab_size=tok.get_vocab_size(), block_size=64, n_layer=1, seed=2)
    pairs = [dict(prompt="sort: 2 1", chosen=dict(ids=[7, 8, 2]), rejected=dict(ids=[9, 2])),
             dict(prompt="sort: 3 1", chosen=dict(ids=[9, 2]), rejected=dict(ids=[7, 7, 8, 2]))]
    cfg = selfjudge.parse_flags(selfjudge.defaults, ["--beta=0.5"])
    loss, stats = selfjudge.preference_loss(policy, lambda: contextlib.nullcontext(ref), tok,
                                            pairs, cfg, "cpu")
    q = [encode_query(tok, x["prompt"]) for x in pairs]
    lp = lambda m, k: response_logps(m, q, [x[k]["ids"] for x in pairs], "cpu")[0]  # noqa
    want, _, _ = dpo_loss(lp(policy, "chosen"), lp(policy, "rejected"), lp(ref, "chosen"),
                          lp(ref, "rejected"), 0.5)
    assert loss.item() == pytest.approx(want.item(), rel=1e-4), (
        "selfjudge.preference_loss: the loss must be dpo_loss(policy chosen, policy rejected, "
        "reference chosen, reference rejected)")
    assert stats["logp_chosen"] == pytest.approx(lp(policy, "chosen").mean().item(), rel=1e-4), (
        "selfjudge.preference_loss logs logp_chosen, the policy's mean log pi(chosen)")


# -----------------------------------------------------------------------------
# rejection-sampling fine-tuning (--mode=raft)

def raft_setup(tok, policy, candidates, cutoff="keep"):
    """A Setup as selfjudge.main builds it, for a policy whose samples are `candidates`
    (one list per prompt)."""
    cfg = selfjudge.parse_flags(selfjudge.defaults, ["--mode=raft", "--raft_n=3",
                                                     f"--batch_size={len(candidates)}",
                                                     f"--cutoff={cutoff}"])
    as_policy = lambda: contextlib.nullcontext(policy)  # noqa: E731
    return selfjudge.Setup(cfg, policy, as_policy, as_policy, tok, n_new=8, principles=[None],
                           prompts=[f"sort: {i}" for i in range(len(candidates))])


@pytest.mark.exercise("tournament")
def test_raft_trains_on_the_tournament_winner(monkeypatch):
    """A judge that prefers the longer response (a known order) picks, for each prompt,
    its longest sample; the step's examples are exactly those, as "chosen"; a winner cut
    off at the length limit is dropped with --cutoff=drop."""
    tok = load_tokenizer(SORT)
    cands = [[s([5, 6]), s([5, 6, 7, 8]), s([9])],
             [s([3, 3, 3]), s([4]), s([2, 2], stopped=False)],
             [s([1]), s([1, 2, 3, 4, 5], stopped=False), s([2, 2])]]
    monkeypatch.setattr(selfjudge, "pick", lambda xs, n, g: xs[:n])
    monkeypatch.setattr(selfjudge, "sample_responses", lambda *a, **k: cands)

    def longer(contexts, a, b):  # P(a better): 1 when a has more words
        return torch.tensor([float(len(x.split()) > len(y.split())) + 0.5 * (len(x) == len(y))
                             for x, y in zip(a, b)])
    monkeypatch.setattr(selfjudge, "tournament", functools.partial(judge.tournament,
                                                                   judge_fn=longer))
    setup = raft_setup(tok, make_tiny(vocab_size=tok.get_vocab_size()), cands)
    winners = selfjudge.raft_winners(setup, torch.Generator().manual_seed(0)).examples
    rule = ("tournament: with a judge that knows the order (longer wins) the best candidate "
            "of each prompt wins, and RAFT trains on it")
    assert [w["chosen"]["ids"] for w in winners] == [[5, 6, 7, 8], [3, 3, 3],
                                                     [1, 2, 3, 4, 5]], rule
    assert [w["prompt"] for w in winners] == setup.prompts, f"{rule}: one winner per prompt"
    setup = raft_setup(tok, setup.policy, cands, cutoff="drop")
    drawn = selfjudge.raft_winners(setup, torch.Generator().manual_seed(0))
    assert [w["chosen"]["ids"] for w in drawn.examples] == [[5, 6, 7, 8], [3, 3, 3]], (
        "raft_winners(--cutoff=drop) drops a winner cut off at the length limit")
    assert drawn.stats["kept"] == pytest.approx(2 / 3), "kept: 2 of the 3 prompts' winners"


@pytest.mark.exercise("response_logps")
def test_raft_loss_is_the_sft_loss_on_the_winners_response_tokens_only():
    """Per winner, the mean negative log-probability of its response tokens (the stop token
    included), never of the prompt's; then the mean over winners."""
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=64)
    winners = [dict(prompt="sort: 2 1", chosen=dict(ids=[7, 8, 2])),
               dict(prompt="sort: 3 1 2", chosen=dict(ids=[9, 2]))]
    loss, stats = selfjudge.sft_loss(model, tok, winners, "cpu")
    want = -sum(manual_logp(model, encode_query(tok, w["prompt"]), w["chosen"]["ids"])
                / len(w["chosen"]["ids"]) for w in winners) / 2
    assert loss.item() == pytest.approx(want, abs=1e-4) and stats["loss"] == loss.item(), (
        f"selfjudge.sft_loss: per winner the mean of -response_logps over its response's "
        f"tokens (stop token included), then the mean over winners: {want:.4f}, got "
        f"{loss.item():.4f}")


# -----------------------------------------------------------------------------
# end to end

def check_metrics(rows, max_steps, on_policy):
    assert rows[0]["step"] == 0 and all(k.startswith("eval_") or k == "step" for k in rows[0])
    steps = rows[1:]
    assert [r["step"] for r in steps] == list(range(1, max_steps + 1))  # one line a step
    for r in steps:
        assert not r.get("skipped"), r
        assert STEP_KEYS <= set(r) and all(math.isfinite(r[k]) for k in STEP_KEYS)
        assert "eval_judge_pref" in r and "eval_oracle_score" in r  # eval_interval=1
        assert ("judge_conf" in r) == on_policy


@pytest.mark.e2e
def test_on_policy_run_writes_checkpoint_and_metrics(task_and_ckpt, tmp_path):
    (model, tok, meta), rows = run_selfjudge(task_and_ckpt, tmp_path)
    check_metrics(rows, 2, on_policy=True)
    assert meta["step"] == 2 and meta["stage"] == "selfjudge"
    assert meta["flags"]["mode"] == "onpolicy"
    init = load_checkpoint(task_and_ckpt[1])[0].state_dict()
    assert any(not torch.equal(v, init[k]) for k, v in model.state_dict().items())


@pytest.mark.e2e
def test_offline_run(task_and_ckpt, tmp_path):
    (model, tok, meta), rows = run_selfjudge(task_and_ckpt, tmp_path, "--mode=offline")
    check_metrics(rows, 2, on_policy=False)
    assert meta["flags"]["mode"] == "offline"


@pytest.mark.e2e
def test_lora_run_trains_adapters_only(task_and_ckpt, tmp_path):
    (model, tok, meta), rows = run_selfjudge(task_and_ckpt, tmp_path, "--lora_rank=2")
    check_metrics(rows, 2, on_policy=True)
    assert model.config.lora_rank == 2
    sd, init = model.state_dict(), load_checkpoint(task_and_ckpt[1])[0].state_dict()
    lora = [k for k in sd if "lora_" in k]
    assert any(k.endswith("lora_A") for k in lora) and any(k.endswith("lora_B") for k in lora)
    assert any(sd[k].abs().max() > 0 for k in lora if k.endswith("lora_B"))  # trained
    assert set(sd) - set(lora) == set(init)
    for k in init:  # the base weights are the frozen reference
        assert torch.equal(sd[k], init[k]), k


# -----------------------------------------------------------------------------
# fixed bugs: each test is named after the bug it pins

@pytest.mark.e2e
def test_lora_eval_samples_the_policy_with_adapters_on(task_and_ckpt, tmp_path, monkeypatch):
    """With LoRA the reference is the policy with its adapters off. main() evaluates with
    `with ref_ctx() as r: evaluate(policy, r, ...)`, so evaluate() samples the policy while
    its adapters are off: every eval_ number of a LoRA run describes the JSFT model."""
    adapters_on = []
    real = evaluate.eval_policy

    def spy(policy, *args, **kw):
        adapters_on.append(all(m.lora_enabled for m in policy.modules()
                               if isinstance(m, Linear) and m.rank > 0))
        return real(policy, *args, **kw)

    monkeypatch.setattr(evaluate, "eval_policy", spy)
    run_selfjudge(task_and_ckpt, tmp_path, "--lora_rank=2", "--max_steps=1")
    assert len(adapters_on) == 2 and adapters_on[-1]  # step 0, then step 1


@pytest.mark.e2e
def test_offline_on_a_task_with_few_pairs(task_and_ckpt, tmp_path):
    """jsft.py holds out min(256, len(pairs) // 10) pairs, selfjudge.py --offline always
    the last 256: with 100 pairs the pool is empty and torch.randint fails deep inside."""
    data = write_small_sort(tmp_path / "few", pairs=100)
    run_selfjudge((data, task_and_ckpt[1]), tmp_path / "out", "--mode=offline")


@pytest.mark.exercise("decision_probs",
                       needs=("swap_average", "sample_next", "decode_loop", "cached_attention"))
def test_evaluate_survives_samples_too_long_to_judge():
    """selfjudge.evaluate sampled with sample_responses' default 48 new tokens, as were the
    reference texts, and judged them without checking that the judge prompt fits: a
    policy that rarely stops crashed the run at its step-0 evaluation. Now main() caps
    responses at what judge.fit_prompts leaves room for and passes that cap to evaluate()."""
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=100, n_layer=1)
    prompts = ["sort: 3 1 2", "sort: 40 7 13 5"]
    g = torch.Generator().manual_seed(0)
    prompts, n_new = fit_prompts(tok, prompts, model.config.block_size, 48)
    assert n_new < 48, "fit_prompts leaves fewer than 48 new tokens in a 100-token context"
    ref_texts = [x[0]["text"] for x in sample_responses(model, tok, prompts, 1, n_new,
                                                        generator=g)]
    e = evaluate.eval_policy(model, tok, prompts, None, ref_texts, 0,
                           lambda: contextlib.nullcontext(model), n_new)
    assert "judge_pref" in e, "eval_policy judges the samples (decision_probs) into judge_pref"


@pytest.mark.exercise("decision_probs",
                       needs=("swap_average", "response_logps", "sample_next",
                              "decode_loop", "cached_attention"))
def test_heldout_preference_accuracy_is_a_half_for_the_reference_and_reads_log_ratios():
    """evaluate(held_out=...) ranks each held-out labelled pair by the policy's implicit
    reward (its log-ratio to the reference): exactly 0.5 while the policy is the
    reference (every pair a tie), 1.0 when every chosen response gained against its
    rejected one, 0.0 when every one lost."""
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=128, n_layer=1)
    task = load_task(SORT)
    held = evaluate.heldout_logps(tok, task, model, model.config.block_size, "cpu")
    queries, responses, ref = held
    n = len(queries) // 2
    assert n == 256 and len(responses) == 2 * n and ref.shape == (2 * n,), (
        "heldout_logps scores the 256 held-out pairs' chosen, then rejected, responses")
    run = lambda ref_logps: evaluate.eval_policy(  # noqa: E731
        model, tok, ["sort: 3 1 2"], None, ["1 2 3"], 0,
        lambda: contextlib.nullcontext(model), 8,
        held_out=(queries, responses, ref_logps))["heldout_pref_acc"]
    assert run(ref) == 0.5, ("heldout_pref_acc is 0.5 while the policy is its reference "
                             "(response_logps the same for both: every pair a tie)")
    shift = torch.cat([torch.ones(n), -torch.ones(n)])   # the reference liked chosen less
    assert run(ref - shift) == 1.0 and run(ref + shift) == 0.0, (
        "heldout_pref_acc: the share of pairs whose chosen response's log-ratio beats the "
        "rejected one's")


@pytest.mark.e2e
def test_steps_without_pairs_still_evaluate(task_and_ckpt, tmp_path):
    """A step whose batch yields no training pair (all identical, undecided or below
    --min_confidence) used to `continue` before the evaluation, so a strict
    --min_confidence silently dropped points from the oracle curve."""
    with pytest.raises(ValueError, match="no step updated the policy"):
        run_selfjudge(task_and_ckpt, tmp_path, "--min_confidence=0.99999", "--max_steps=2",
                      "--eval_interval=1")  # (1 is refused: no judgment is that sure)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r.get("skipped") for r in rows[1:])
    assert all("eval_oracle_score" in r for r in rows)


# -----------------------------------------------------------------------------
# every mode end to end, a kill and a resume, and runs that train on nothing

@pytest.mark.parametrize("extra", [("--mode=offpolicy",), ("--mode=raft",),
                                   ("--judge=current",)])
@pytest.mark.e2e
def test_every_mode_runs_end_to_end(task_and_ckpt, tmp_path, extra):
    """--mode=offpolicy and --judge=current were never run by a test."""
    (model, tok, meta), rows = run_selfjudge(task_and_ckpt, tmp_path, *extra)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert f"--mode={meta['flags']['mode']}" in extra or meta["flags"]["judge"] == "current"
    assert all(r["pairs"] > 0 and math.isfinite(r["loss"]) for r in rows[1:])
    init = load_checkpoint(task_and_ckpt[1])[0].state_dict()
    assert any(not torch.equal(v, init[k]) for k, v in model.state_dict().items())
    if "raft" in extra[0]:  # the oracle's view of the winners, beside the loss
        assert all("oracle_winner_best" in r and "oracle_chosen_perfect" in r
                   for r in rows[1:])


@pytest.mark.e2e
@pytest.mark.parametrize("judge", ["reference", "current"])
def test_main_judges_with_the_frozen_reference_or_with_judge_current_the_policy(
        task_and_ckpt, tmp_path, monkeypatch, judge):
    """Every step's pairs are judged by the frozen JSFT model: no trainable weights, the
    checkpoint's weights at every step. Only --judge=current hands the judgment to the
    policy, whose weights have moved by step 3. Judging with the policy by mistake trains
    fine and every other end-to-end check passes; this one names it."""
    init = load_checkpoint(task_and_ckpt[1])[0].state_dict()
    seen, real = [], selfjudge.judge_by_principles

    def spy(model, *args, **kw):
        seen.append((any(p.requires_grad for p in model.parameters()),
                     all(torch.equal(v, init[n]) for n, v in model.state_dict().items())))
        return real(model, *args, **kw)
    monkeypatch.setattr(selfjudge, "judge_by_principles", spy)
    run_selfjudge(task_and_ckpt, tmp_path, f"--judge={judge}", "--max_steps=3",
                  "--eval_interval=0")
    assert len(seen) == 3  # one judgment per step
    if judge == "reference":
        assert all(not trainable and frozen for trainable, frozen in seen), (
            "selfjudge: with --judge=reference every step must judge with the frozen "
            f"reference (see frozen_models and onpolicy_pairs); (trainable, initial weights) "
            f"per step: {seen}")
    else:
        assert all(trainable for trainable, _ in seen) and not seen[-1][1], seen


@pytest.mark.e2e
def test_a_killed_run_resumes_to_the_same_weights_and_logs_each_step_once(
        task_and_ckpt, tmp_path, monkeypatch):
    """selfjudge.py used to save only at the end: killed at step 111 of 200 it lost
    everything, and resuming from an older checkpoint logged the steps between twice.
    Here the run dies after logging step 3, one step past its last checkpoint (step 2)."""
    flags = ("--max_steps=4", "--ckpt_interval=2", "--eval_interval=2")
    (whole, _, _), _ = run_selfjudge(task_and_ckpt, tmp_path / "whole", *flags)
    real_log = selfjudge.metrics_log

    def dying_log(path, start):
        log = real_log(path, start)

        def write(row):
            log(row)
            if row["step"] == 3:
                raise KeyboardInterrupt  # the kill: after step 3, before its checkpoint
        return write
    monkeypatch.setattr(selfjudge, "metrics_log", dying_log)
    with pytest.raises(KeyboardInterrupt):
        run_selfjudge(task_and_ckpt, tmp_path / "killed", *flags)
    assert load_checkpoint(str(tmp_path / "killed" / "ckpt.pt"))[2]["step"] == 2
    monkeypatch.setattr(selfjudge, "metrics_log", real_log)
    (resumed, _, meta), rows = run_selfjudge(task_and_ckpt, tmp_path / "killed", *flags,
                                             "--resume")
    assert meta["step"] == 4 and [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


@pytest.mark.e2e
def test_steps_without_pairs_say_why_and_how_many_trained(task_and_ckpt, tmp_path, capsys,
                                                          monkeypatch):
    """A judge undecided on every pair trained on zero pairs for 150 steps and finished
    with "done": now each step logs its pair count, a run of idle steps says why, and a run
    that never updated the policy ends in an error."""
    monkeypatch.setattr(selfjudge, "IDLE_WARNING", 2)
    with pytest.raises(ValueError, match="no step updated the policy: of 12 pairs judged, "
                                         "100% were undecided"):
        run_selfjudge(task_and_ckpt, tmp_path, "--min_confidence=0.99999", "--max_steps=3",
                      "--eval_interval=0")
    out = capsys.readouterr().out
    assert "warning: 2 steps in a row without a pair to train on: of 8 pairs judged, " \
           "100% were undecided (p = 0.5 or |2p-1| < --min_confidence)" in out
    assert "0 of 3 steps updated the policy, on 0 pairs" in out
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        assert [json.loads(x).get("pairs") for x in f] == [None, 0, 0, 0]  # step 0: eval


@pytest.mark.e2e
def test_stage_2_trains_from_a_checkpoint_jsft_wrote(task_and_ckpt, tmp_path):
    """The hand-off between the stages: the fixture's checkpoint is saved directly, so
    this is the one run of selfjudge.py on a checkpoint jsft.py trained."""
    data, _ = task_and_ckpt
    jsft.main(["--data", data, "--max_steps=2", "--out_dir", str(tmp_path / "jsft")]
              + TINY_JSFT)
    (_, _, meta), rows = run_selfjudge((data, str(tmp_path / "jsft" / "ckpt.pt")),
                                       tmp_path / "sj", "--max_steps=1")
    assert meta["step"] == 1 and [r["step"] for r in rows] == [0, 1]


@pytest.mark.e2e
def test_a_judge_never_trained_to_judge_is_refused(task_and_ckpt, tmp_path):
    data, _ = task_and_ckpt
    jsft.main(["--data", data, "--max_steps=1", "--judge_ratio=0", "--out_dir",
               str(tmp_path / "sft")] + TINY_JSFT)
    with pytest.raises(ValueError, match="trained with --judge_ratio=0: it never learned to "
                                         "judge"):
        run_selfjudge((data, str(tmp_path / "sft" / "ckpt.pt")), tmp_path / "sj")


@pytest.mark.e2e
def test_a_judge_near_chance_is_refused_before_training(task_and_ckpt, tmp_path):
    """Self-training on a weak judge did harm (a 67% judge took the sort policy from 0.76
    to 0.60 in 300 steps): a judge near chance on the held-out labelled pairs is now
    refused before any step, unless --allow_weak_judge; offline DPO needs no judge."""
    flags = [f for f in TINY_SJ if f != "--allow_weak_judge"]
    data, ckpt = task_and_ckpt
    with pytest.raises(ValueError, match=r"the judge is too weak to self-train on: on the 30 "
                       r"held-out labelled pairs it agrees with the labels on .*, where "
                       r"self-training needs at least 65% and at most 35%; .*--allow_weak_judge"):
        selfjudge.main(["--data", data, "--init", ckpt, "--out_dir", str(tmp_path / "a")]
                       + flags)
    assert not os.path.exists(tmp_path / "a" / "ckpt.pt")
    selfjudge.main(["--data", data, "--init", ckpt, "--out_dir", str(tmp_path / "b"),
                    "--mode=offline"] + flags)


# -----------------------------------------------------------------------------
# the guard: stop when the judge no longer reads the policy's answers

def test_judge_blind_fires_on_the_window_mean_and_skips_steps_without_a_pair(monkeypatch):
    """The guard averages the judge's position bias over the last GUARD_STEPS steps that
    had a differing pair (nan: none did), and fires only when that mean passes the limit;
    limit 0 turns it off, and modes that judge no pair (offline) never fire it."""
    monkeypatch.setattr(judge, "GUARD_STEPS", 3)
    blind = lambda flips, limit=0.25: [  # noqa: E731
        judge.judge_blind(recent, dict(judge_by_position=f), limit)
        for recent in [[]] for f in flips]
    assert blind([0.3, 0.3]) == [None, None]                    # the window is not full yet
    assert blind([0.2, 0.2, 0.3]) == [None, None, None]         # mean 0.233
    assert blind([0.2, 0.3, 0.4])[-1] == pytest.approx(0.3)
    assert blind([0.9, float("nan"), 0.9, 0.9])[1:] == [None, None, pytest.approx(0.9)]
    assert blind([0.9] * 5, limit=0) == [None] * 5
    assert judge.judge_blind([], dict(pairs=4), 0.25) is None


@pytest.mark.e2e
def test_a_run_whose_judge_goes_blind_stops_saves_and_refuses_to_resume(
        task_and_ckpt, tmp_path, monkeypatch, capsys):
    """On data/words the on-policy run won 75% against JSFT at step 150, then fell to 53%
    by step 1200 while its judge followed the position more and more on the policy's
    pairs (README, "Why on-policy?"). The fixture's untrained judge follows the position
    on nearly every pair, so with a 2-step window the run stops at step 2 of 4, saves that
    step, says why, and --resume refuses to train on unless the guard is off."""
    monkeypatch.setattr(judge, "GUARD_STEPS", 2)
    (_, _, meta), rows = run_selfjudge(task_and_ckpt, tmp_path, "--max_steps=4",
                                       "--eval_interval=0")
    assert meta["step"] == 2 and meta["stopped"] and [r["step"] for r in rows] == [0, 1, 2]
    assert "stopped at step 2 of 4: the judge's decisions followed the position" in \
        capsys.readouterr().out
    with pytest.raises(ValueError, match="stopped at step 2, its judge blind"):
        run_selfjudge(task_and_ckpt, tmp_path, "--max_steps=4", "--resume")
    (_, _, meta), _ = run_selfjudge(task_and_ckpt, tmp_path, "--max_steps=4", "--resume",
                                    "--max_position_bias=0")
    assert meta["step"] == 4 and not meta["stopped"]


@pytest.mark.e2e
def test_every_key_of_metrics_jsonl_has_a_glossary_entry(task_and_ckpt, tmp_path):
    """A reader who opens metrics.jsonl (or plot.py's figures) finds each key explained in
    docs/metrics.md: every key that any mode writes, the oracle's and the evaluation's
    included, is named there in backquotes."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "metrics.md"),
               encoding="utf-8").read()
    keys = set()
    for mode in ("onpolicy", "raft", "offline"):
        _, rows = run_selfjudge(task_and_ckpt, tmp_path / mode, f"--mode={mode}")
        keys |= {k for r in rows for k in r}
    assert {"judge_by_position", "eval_win_rate_vs_ref", "oracle_winner_best"} <= keys
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing, f"metrics.jsonl keys with no entry in docs/metrics.md: {missing}"


@pytest.mark.e2e
def test_a_one_step_run_counts_its_update_as_a_number(task_and_ckpt, tmp_path, capsys):
    """The tally added bool(examples) to a Counter, so after one step its count was True
    and a one-step run printed "True of 1 steps updated the policy"."""
    run_selfjudge(task_and_ckpt, tmp_path, "--max_steps=1", "--eval_interval=0")
    assert "; 1 of 1 steps updated the policy" in capsys.readouterr().out


# -----------------------------------------------------------------------------
# a self-training step's statistics and the oracle's view of them

def sample(text, stopped=True):
    return dict(text=text, ids=[ord(c) for c in text], stopped=stopped)


def test_step_statistics_known_answers():
    """Five prompts judged: a right pair the judge kept, a pair it got wrong and kept, an
    oracle tie it found undecided, identical samples, and a pair it could not read (0.5:
    too long for its context). The oracle scores the sorted answer 1, a one-mistake
    answer 0.5, anything else 0."""
    oracle = lambda p, r: {"1 2": 1.0, "2 1": 0.5, "1 1": 0.5}.get(r, 0.0)  # noqa: E731
    a = [sample("1 2"), sample("1 1"), sample("2 1"), sample("1 2"), sample("1 2")]
    b = [sample("2 1"), sample("1 2"), sample("1 1"), sample("1 2"), sample("x")]
    p = torch.tensor([0.9, 0.8, 0.5, 0.5, 0.5])            # the second is wrong
    by_position = torch.tensor([False, True, True, True, True])
    kept = [dict(prompt="q", chosen=a[0], rejected=b[0]),
            dict(prompt="q", chosen=a[1], rejected=b[1])]
    st = selfjudge.pair_stats(kept, a, b, p, by_position, identical=1)
    assert st["pairs"] == 2 and st["kept"] == 0.4 and st["identical"] == 0.2
    assert st["judge_conf"] == pytest.approx((0.8 + 0.6) / 5)
    assert st["judge_by_position"] == pytest.approx(3 / 4)        # on the 4 pairs that differ
    d = evaluate.kept_diagnostics(oracle, kept)
    assert d["oracle_agree_kept"] == 0.5                   # kept: one right, one wrong
    assert d["oracle_chosen_perfect"] == 0.5
    d = evaluate.judged_diagnostics(oracle, ["q"] * 5, a, b, p)
    assert d["oracle_agree_all"] == 0.5                    # ties and unread pairs don't count
    assert d["oracle_ties"] == pytest.approx(1 / 4)        # "2 1" vs "1 1", of 4 that differ


def test_step_statistics_of_offline_and_raft_steps():
    oracle = lambda p, r: {"1 2": 1.0, "2 1": 0.5}.get(r, 0.0)  # noqa: E731
    labelled = [dict(prompt="q", chosen=sample("2 1"), rejected=sample("1 2")),  # label wrong
                dict(prompt="q", chosen=sample("1 2"), rejected=sample("x"))]
    assert selfjudge.trained_on(labelled) == dict(pairs=2)
    d = evaluate.kept_diagnostics(oracle, labelled)
    assert d == dict(oracle_agree_kept=0.5, oracle_chosen_perfect=0.5)
    cands = [[sample("x"), sample("2 1"), sample("1 2")], [sample("2 1"), sample("x")]]
    winners = [dict(prompt="q", chosen=c[w]) for c, w in zip(cands, [1, 0])]
    d = evaluate.kept_diagnostics(oracle, winners)
    assert d == dict(oracle_chosen_perfect=0.0)
    d = evaluate.winner_diagnostics(oracle, ["q", "q"], cands, [1, 0])
    assert d == dict(oracle_winner_best=0.5)
    assert selfjudge.trained_on([]) == dict(pairs=0, skipped=True)
