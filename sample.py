"""
The policy's two verbs: sample responses (batched, with a KV cache: temperature, top-k,
top-p, a stop token per row) and score them (the log-probability of a response given its
prompt, which DPO compares).

    python sample.py --ckpt out/jsft/ckpt.pt --prompt "sort: 7 3 9 1 4" --num_samples 4
    python sample.py --ckpt path/to/gpt2-folder --prompt "Hello, I am"   # plain continuation

Library use: `generate(model, prompts, max_new_tokens, ...)` takes token-id lists of any
lengths and returns, per row, the new tokens, their log-probabilities and whether the
row stopped on its own; `sample_responses` does it for chat prompts, and
`response_logps` scores responses.
"""
import contextlib
import os
import sys

import torch

from common import get_device, load_checkpoint, parse_flags
from data.chat import chat_ids, decode_response, encode_query, load_tokenizer
from model import GPT, autocast, check_vocab

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    ckpt="out/jsft/ckpt.pt",  # a nano-self-judge checkpoint, or a GPT-2 folder (HF layout)
    prompt="sort: 7 3 9 1 4",  # the prompt (chat-formatted for checkpoints, raw for GPT-2)
    num_samples=4,            # samples of the prompt, drawn as one batch
    max_new_tokens=64,        # at most this many new tokens per sample
    temperature=1.0,          # 0 = greedy (argmax)
    top_k=0,                  # keep the k most likely tokens; 0 = off
    top_p=1.0,                # keep the smallest set with this much probability; 1.0 = off
    seed=1337,                # seeds the sampler's torch.Generator
    device="auto",            # auto: cuda, then mps, then cpu
)
limits = dict(num_samples="[1, inf)", max_new_tokens="[1, inf)", temperature="[0, inf)",
              top_k="[0, inf)", top_p="(0, 1]")


# -----------------------------------------------------------------------------
# sampling

def pad_right(seqs, value=0, device="cpu"):
    """Lists of token ids of any lengths -> (B, L) LongTensor, each row left-aligned and
    filled with `value` past its end. Every stage batches ragged sequences this way; the
    lengths say where each row ends (a pad id is never used to find the end)."""
    L = max(len(s) for s in seqs)
    out = torch.full((len(seqs), L), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token per row from logits (B, V): temperature, then top-k, then top-p.
    temperature 0 is argmax. Each row draws its own token."""
    # --- exercise sample_next (solution below) ---
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop = (probs.cumsum(-1) - probs) >= top_p
        drop[:, 0] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    # --- end exercise ---


class KVCache:
    """Keys and values for every layer, preallocated once for prompt + new tokens: the
    sampler's memory of the prefix, which model.GPT reads and extends (GPT.hidden).

    `lengths[b]` is how many positions of row b hold real tokens, so rows with prompts of
    different lengths decode together: each row writes its next token at its own position.
    A ragged prefill writes padding past a row's end too; it never counts (the model
    advances `lengths` by each row's real length) and the row's next tokens overwrite it.
    Attention reads all max_len positions at every step, through a mask of each row's
    filled ones (`positions`), so its shapes stay the same for the whole generation.
    """

    def __init__(self, config, batch_size, max_len, device, dtype):
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hs)  # (L, B, H, S, D)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.positions = torch.arange(max_len, device=device)  # (S,) each key's position
        self.rows = torch.arange(batch_size, device=device)[:, None]  # (B, 1)

    @classmethod
    def for_prompts(cls, model, prompts, max_new_tokens):
        """Room for these prompts and max_new_tokens more each, within the model's context:
        bfloat16 on a GPU (half the memory), else float32."""
        device = next(model.parameters()).device
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        n = min(model.config.block_size, max(len(p) for p in prompts) + max_new_tokens)
        return cls(model.config, len(prompts), n, device, dtype)

    def write(self, layer, pos, k, v):
        """Store one layer's k, v (B, H, T, D) at each row's own positions pos (B, T)."""
        # indexing [layer, rows, :, pos] addresses a (B, T, H, D) block: T moves before H
        self.k[layer, self.rows, :, pos] = k.transpose(1, 2).to(self.k.dtype)
        self.v[layer, self.rows, :, pos] = v.transpose(1, 2).to(self.v.dtype)

    def read(self, layer):
        """One layer's keys and values at all max_len positions: (B, H, S, D) each."""
        return self.k[layer], self.v[layer]


def fixed_shape_attention(device):
    """The attention kernels a generation runs under. The cache gives attention one shape
    per generation, with a boolean mask, which rules out flash attention. On CUDA we ask
    for the memory-efficient kernel (the math one as the fallback) rather than let torch
    pick cuDNN's, its default on Hopper GPUs since torch 2.9, which builds a plan for
    every new shape, and each call brings new ones (its batch size, its prompts' lengths).
    On a CPU torch chooses: its kernels plan nothing. (sdpa_kernel: torch 2.3 or newer.)"""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def check_prompts(prompts, block_size):
    if any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    longest = max(len(p) for p in prompts)
    if longest >= block_size:
        raise ValueError(f"generate: a prompt of {longest} tokens leaves no room in the "
                         f"model's context of {block_size} tokens")


def last_logits(model, seqs, cache=None):
    """The next-token logits (b, V) after each of seqs (token-id lists of any lengths):
    one forward pass over the right-padded batch, read at each row's last real token.
    With a cache, the rows' real tokens enter it (a prefill)."""
    device = next(model.parameters()).device
    lens = torch.tensor([len(s) for s in seqs], device=device)
    with autocast(device):
        h = model.hidden(pad_right(seqs, device=device), cache, lengths=lens)  # (b, T, C)
        return model.lm_head(h[torch.arange(len(seqs), device=device), lens - 1]).float()


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             eos_id=None, use_cache=True, generator=None):
    """Sample continuations of a batch of prompts (lists of token ids, any lengths).

    Returns (tokens, logprobs, stopped), each a list with one entry per prompt:
      tokens[b]   the new token ids, up to but not including eos_id
      logprobs[b] float32 tensor: log-probability of each new token under the model's raw
                  distribution (no temperature or filtering), the stop token's last if
                  the row stopped: len(logprobs[b]) == len(tokens[b]) + stopped[b]
      stopped[b]  True if the row produced eos_id; False if it was cut off by
                  max_new_tokens or by the context length (it gets no stop token)
    use_cache=False recomputes the whole prefix every step: the reference the cache is
    tested against. Every row takes part in every step, finished or not, so the shapes
    never change; the bookkeeping stays on the device, and the host asks once per step
    whether all rows are done. The tokens come to the host once, at the end.
    """
    if len(prompts) == 0:
        return [], [], []
    check_prompts(prompts, model.config.block_size)
    device = next(model.parameters()).device
    B, N = len(prompts), max_new_tokens
    # each row's budget of new tokens: N, or fewer where its prompt nears the context end
    budget = torch.tensor([min(model.config.block_size - len(p), N) for p in prompts],
                          device=device)
    tokens = torch.zeros(B, N, dtype=torch.long, device=device)  # (B, N) every step's draw
    logps = torch.zeros(B, N, device=device)                    # (B, N) float32
    taken = torch.zeros(B, dtype=torch.long, device=device)     # tokens a row kept so far
    stopped = torch.zeros(B, dtype=torch.bool, device=device)   # produced eos_id
    done = torch.zeros(B, dtype=torch.bool, device=device)      # stopped or cut off

    # one autocast for the whole generation: on a GPU it keeps the bfloat16 copy of each
    # weight from token to token, where entering it per step cast every weight again
    with fixed_shape_attention(device), autocast(device):
        # 1) prefill: each row's next-token logits, its real tokens in the cache
        cache = KVCache.for_prompts(model, prompts, N) if use_cache else None
        logits = last_logits(model, prompts, cache)                       # (B, V)

        # 2) decode: a token for every row each step; a finished row's draws are ignored
        # --- exercise decode_loop (solution below) ---
        for step in range(N):
            nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            live = ~done                                   # rows that keep this token
            tokens[:, step] = nxt
            logps[:, step] = torch.log_softmax(logits.float(), -1).gather(1, nxt[:, None])[:, 0]
            taken += live
            if eos_id is not None:
                stopped |= live & (nxt == eos_id)
            done = done | stopped | (taken >= budget)      # cut off: no stop token
            if done.all():                                 # the step's one host round trip
                break
            if use_cache:  # a finished row writes in place and never advances
                logits = model(nxt[:, None], cache=cache, lengths=(~done).long())[0][:, -1]
            else:  # the reference: each row's whole sequence again
                n, drawn = taken.tolist(), tokens[:, :step + 1].tolist()
                logits = last_logits(model, [p + t[:k] for p, t, k in zip(prompts, drawn, n)])
        # --- end exercise ---
    n, s, drawn, lp = taken.tolist(), stopped.tolist(), tokens.tolist(), logps.cpu()
    return ([t[:k - sb] for t, k, sb in zip(drawn, n, s)],
            [lp[b, :n[b]] for b in range(B)], s)


def sample_responses(model, tok, prompts, n=1, max_new_tokens=48, temperature=1.0,
                     top_p=None, generator=None, batch_size=256):
    """n chat responses per prompt (text). Returns a list per prompt of n dicts with the
    text, the sampled ids (the stop token appended when the row stopped: it belongs to the
    response) and `stopped`. Keep the ids: scoring re-tokenized text is a classic bug."""
    queries = [encode_query(tok, p) for p in prompts for _ in range(n)]
    end = chat_ids(tok)[2]
    rows = []
    for i in range(0, len(queries), batch_size):
        toks, _, stopped = generate(model, queries[i:i + batch_size], max_new_tokens,
                                    temperature, None, top_p, end, generator=generator)
        rows += [dict(text=decode_response(tok, t), ids=t + [end] * s, stopped=s)
                 for t, s in zip(toks, stopped)]
    return [rows[j * n:(j + 1) * n] for j in range(len(prompts))]


# -----------------------------------------------------------------------------
# scoring: the log-probability of a response

def sequence_logprobs(logits, targets, mask):
    """Summed log-probability of each row's masked targets.

    logits (B, T, V), targets (B, T) token ids, mask (B, T) 1.0 where the target counts.
    Position t's logits predict targets[:, t] (shift before calling). Returns (B,) float32.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    tok_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (tok_logp * mask).sum(-1)


LOGITS_BUDGET = 2 ** 28  # logits one no-gradient chunk may hold: 1 GiB of float32


def rows_per_chunk(longest, vocab_size, max_rows):
    """How many rows of up to `longest` tokens one no-gradient forward pass may take: at
    most max_rows, and few enough that their logits (rows x longest x vocab) stay within
    LOGITS_BUDGET. With GPT-2's 50k-token vocabulary, 128 rows of 1024 tokens are 26 GB
    of float32 logits, twice over with their log-softmax."""
    return max(1, min(max_rows, LOGITS_BUDGET // max(1, longest * vocab_size)))


def response_logps(model, queries, responses, device):
    """Log-probability of each response given its query, from one batched forward pass:
    (summed (N,), per-token mean (N,)). responses are the sampled ids themselves, the stop
    token included when it was produced, so it is scored and trained."""
    # --- exercise response_logps (solution below) ---
    seqs = [q + r for q, r in zip(queries, responses)]
    idx = pad_right([s[:-1] for s in seqs], device=device)
    tgt = pad_right([s[1:] for s in seqs], device=device)
    # 1.0 on the targets that are response tokens (the query's tokens and padding: 0.0)
    mask = pad_right([[0] * (len(q) - 1) + [1] * len(r) for q, r in zip(queries, responses)],
                     device=device).float()
    with autocast(device):
        logits, _ = model(idx)
    summed = sequence_logprobs(logits, tgt, mask)
    return summed, summed / mask.sum(-1).clamp(min=1)
    # --- end exercise ---


@torch.no_grad()
def batched_logps(model, queries, responses, device, batch_size=128):
    """Summed response log-probabilities, a chunk at a time (no gradient), each chunk at
    most batch_size rows and within LOGITS_BUDGET: what measurement scores with."""
    n = rows_per_chunk(max(len(q) + len(r) for q, r in zip(queries, responses)),
                       model.config.vocab_size, batch_size)
    return torch.cat([response_logps(model, queries[i:i + n], responses[i:i + n],
                                     device)[0].float() for i in range(0, len(queries), n)])


def main(argv=None):
    cfg = parse_flags(defaults, argv, __file__, limits)
    device = get_device(cfg.device)
    chat = not os.path.isdir(cfg.ckpt)
    if chat:  # our checkpoint: the chat format, stop at <|end|>
        model, tok, _ = load_checkpoint(cfg.ckpt)
        prompt, eos = encode_query(tok, cfg.prompt), chat_ids(tok)[2]
    else:  # a GPT-2 folder: plain text in, plain text out, stop at <|endoftext|>
        model, tok = GPT.from_pretrained(cfg.ckpt), load_tokenizer(cfg.ckpt, chat=False)
        check_vocab(tok, model, f"{cfg.ckpt}: ")
        prompt, eos = tok.encode(cfg.prompt).ids, tok.token_to_id("<|endoftext|>")
    model.to(device).eval()
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    toks, logps, stopped = generate(model, [prompt] * cfg.num_samples, cfg.max_new_tokens,
                                    cfg.temperature, cfg.top_k or None, cfg.top_p, eos,
                                    generator=g)
    for t, lp, s in zip(toks, logps, stopped):
        text = decode_response(tok, t) if chat else tok.decode(t)
        print(f"--- logp {lp.sum():.2f}{'' if s else ' (cut off)'}\n{text}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
