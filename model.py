"""
The model: a GPT-2 written from scratch, with optional LoRA and GPT-2 weight loading; it
continues from a KV cache that the sampler owns (sample.KVCache). Parameter names follow
GPT-2 (wte, wpe, c_attn, c_proj, c_fc, ln_f), so loading real GPT-2 weights is one loop
with shape checks and one transpose rule. A model trained from scratch may use rotary
positions instead of wpe (GPTConfig.pos = "rope"). The chat format lives in data/chat.py;
flags, the device and checkpoints in common.py.

    from model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128))
    logits, loss = model(idx, targets)          # idx (B, T) -> logits (B, T, V)

Run `python model.py GPT2_FOLDER` to print a GPT-2 folder's config.
"""
import contextlib
import json
import math
import os
import struct
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100  # the one ignore index: targets with this value carry no loss
LOGIT_LIMIT = 1e4    # a trained model's logits stay within a few hundred (GPT.diverged)


@dataclass
class GPTConfig:
    vocab_size: int = 512
    block_size: int = 128     # context length: positions the model has embeddings for
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    pos: str = "learned"      # learned: GPT-2's position embeddings (wpe); rope: rotary
    gelu: str = "tanh"        # tanh: GPT-2's approximation; exact: erf, 2-3x faster on CPUs
    dropout: float = 0.0
    bias: bool = True         # GPT-2 has biases in Linear and LayerNorm
    lora_rank: int = 0        # 0: no adapters; >0: LoRA on c_attn, c_proj, c_fc
    lora_alpha: float = 16.0


# what every caller of the model needs: the dtype it runs in, a tokenizer that fits it
def autocast(device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 here)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_vocab(tok, model, where=""):
    """Every id the tokenizer can produce must have an embedding row."""
    n = tok.get_vocab_size(with_added_tokens=True)
    if n > model.config.vocab_size:
        raise ValueError(f"{where}tokenizer has {n} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}: the tokenizer does not belong to this "
                         "checkpoint (pass the checkpoint's own tokenizer, or resize the model)")


# -----------------------------------------------------------------------------
# building blocks

def rotary_angles(pos, head_dim, base=10000.0):
    """cos and sin (B, 1, T, head_dim/2) of the rotary angles pos * base^(-2i/head_dim) at
    positions pos (B, T); computed once per forward pass and shared by every layer."""
    freq = base ** (-torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32)
                    / head_dim)
    angle = pos[:, None, :, None].float() * freq
    return angle.cos(), angle.sin()


def rotary(x, angles):
    """Rotary position embedding (RoPE; Su et al., 2021) of queries or keys x (B, H, T, D)
    with angles = rotary_angles(pos, D): channel pairs (i, i + D/2) turn by the angle
    pos * base^(-2i/D), so a query-key product depends on the two positions only through
    their difference. A judge compares the i-th number of a response with the i-th of
    another and of the prompt, wherever the lines start: relative positions make that one
    learned offset."""
    cos, sin = angles
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)


class Linear(nn.Linear):
    """nn.Linear with an optional LoRA adapter: y = x W^T + b + (alpha/r) x A^T B^T.

    B starts at zero, so a fresh adapter changes nothing. `lora_enabled = False` turns the
    adapter off, which makes the frozen base weights the reference model in selfjudge.py.
    """

    def __init__(self, d_in, d_out, bias=True, rank=0, alpha=16.0):
        super().__init__(d_in, d_out, bias=bias)
        self.rank = rank
        self.lora_enabled = True
        if rank > 0:
            self.lora_A = nn.Parameter(torch.randn(rank, d_in) / math.sqrt(d_in))
            self.lora_B = nn.Parameter(torch.zeros(d_out, rank))
            self.scaling = alpha / rank

    def forward(self, x):
        y = super().forward(x)
        if self.rank > 0 and self.lora_enabled:
            y = y + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling
        return y


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        r, a = config.lora_rank, config.lora_alpha
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, config.bias, r, a)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias, r, a)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x, cache=None, layer=0, pos=None, angles=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if angles is not None:  # rope; keys enter the cache already rotated to their positions
            q, k = rotary(q, angles), rotary(k, angles)
        drop = self.dropout if self.training else 0.0
        if cache is None:  # plain causal attention over the T positions given
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            # write this chunk at each row's own positions pos (B, T), then attend to
            # every key up to and including the query's own position
            # --- exercise cached_attention (solution below) ---
            cache.write(layer, pos, k, v)
            kk, vv = (t.to(q.dtype) for t in cache.read(layer))  # (B, H, S, D), all S
            mask = cache.positions[None, None, :] <= pos[:, :, None]  # (B, T, S)
            y = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask[:, None])
            # --- end exercise ---
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return F.dropout(self.c_proj(y), drop, self.training)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        r, a = config.lora_rank, config.lora_alpha
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, config.bias, r, a)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, config.bias, r, a)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = "tanh" if config.gelu == "tanh" else "none"

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias, eps=1e-5)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias, eps=1e-5)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, layer=0, pos=None, angles=None):
        x = x + self.attn(self.ln_1(x), cache, layer, pos, angles)
        return x + self.mlp(self.ln_2(x))


# -----------------------------------------------------------------------------
# the GPT

class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        if config.pos not in ("learned", "rope"):
            raise ValueError(f"pos={config.pos!r}: position encoding is 'learned' (GPT-2) "
                             "or 'rope'")
        if config.gelu not in ("tanh", "exact"):
            raise ValueError(f"gelu={config.gelu!r}: GELU is 'tanh' (GPT-2's approximation) "
                             "or 'exact'")
        if config.n_embd % config.n_head:  # an assert deep inside attention before
            raise ValueError(f"n_embd={config.n_embd} is not a multiple of n_head="
                             f"{config.n_head}: each head takes n_embd / n_head channels")
        if config.pos == "rope" and config.n_embd // config.n_head % 2:
            raise ValueError(f"pos='rope' turns channel pairs: n_embd / n_head = "
                             f"{config.n_embd // config.n_head} must be even")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias, eps=1e-5),
        ))
        if config.pos == "learned":  # GPT-2; rope has no position weights
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self):
        """Parameters, less the position embeddings (as nanoGPT counts them)."""
        wpe = self.transformer["wpe"].weight.numel() if "wpe" in self.transformer else 0
        return sum(p.numel() for p in self.parameters()) - wpe

    @torch.no_grad()
    def diverged(self):
        """What of the model has diverged, or None: the first weight holding NaN or inf, or
        its outputs on a few tokens, NaN, inf or beyond +-LOGIT_LIMIT (weights finite but
        so large that every probability is exactly 0 or 1, as one step at --lr=1e6 leaves
        them, or that a forward pass overflows, as at --lr=1e30). One short forward pass,
        one host sync: what common.stop_if_diverged checks before a save."""
        named = list(self.named_parameters())
        was, n = self.training, min(8, self.config.block_size)
        self.eval()
        idx = torch.arange(n, device=named[0][1].device)[None] % self.config.vocab_size
        logits = self(idx)[0]
        self.train(was)
        finite = [torch.isfinite(p).all() for _, p in named] + [torch.isfinite(logits).all()]
        *ok, top = torch.cat([torch.stack(finite).float(),
                              logits.abs().max()[None]]).tolist()  # one host sync
        if not all(ok):
            i = ok.index(0.0)
            return (f"weight {named[i][0]} holds NaN or inf" if i < len(named) else
                    "the model's outputs are NaN or inf (its weights have grown too large)")
        if top > LOGIT_LIMIT:
            return (f"the model's logits reach {top:.1e}, where a trained model's stay "
                    "within a few hundred")
        return None

    def forward(self, idx, targets=None, cache=None, lengths=None):
        """idx (B, T) token ids -> logits (B, T, V) at every position, and the mean
        cross-entropy over targets (B, T) that are not IGNORE_INDEX (None without targets).

        With a cache (sample.KVCache), idx continues each row at its filled length: row b's
        tokens take positions cache.lengths[b] .. + T - 1, and cache.lengths grows by T, or
        by lengths[b] when only the first lengths[b] tokens of row b are real (see hidden).
        """
        logits = self.lm_head(self.hidden(idx, cache, lengths)).float()  # (B, T, V), fp32
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return logits, loss

    def hidden(self, idx, cache=None, lengths=None):
        """The final hidden states (B, T, C), before lm_head: for callers that need the
        logits at a few positions only (the judge reads one per row). With a cache,
        `lengths` (B,) says how many of each row's T tokens are real (a right-padded,
        ragged prefill); the cache counts those only. None: all T are real."""
        B, T = idx.size()
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than the model's context "
                                 f"(block_size={self.config.block_size})")
            pos = torch.arange(T, device=idx.device)[None].expand(B, T)
        else:
            # no check that pos fits: reading it would cost a host round trip per token;
            # the sampler sizes the cache and never lets a row pass its end
            pos = cache.lengths[:, None] + torch.arange(T, device=idx.device)[None]  # (B, T)
        x = self.transformer.wte(idx)
        angles = None
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(pos)
        else:  # rope: attention turns q and k by these angles instead
            angles = rotary_angles(pos, self.config.n_embd // self.config.n_head)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i, pos, angles)
        if cache is not None:
            cache.lengths = cache.lengths + (T if lengths is None else lengths)
        return self.transformer.ln_f(x)

    # --- LoRA -----------------------------------------------------------------
    def with_lora(self, rank, alpha):
        """The same weights in a new model with fresh adapters (B = 0: no change yet), and
        only the adapters trainable."""
        config = GPTConfig(**{**self.config.__dict__, "lora_rank": rank, "lora_alpha": alpha})
        out = GPT(config).to(next(self.parameters()).device)
        out.load_state_dict(self.state_dict(), strict=False)
        out.freeze_base()
        return out

    def freeze_base(self):
        """Train only the adapters: everything else gets requires_grad=False."""
        for name, p in self.named_parameters():
            p.requires_grad = "lora_" in name

    @contextlib.contextmanager
    def adapters_off(self):
        """Inside this block the model is its base weights: the frozen reference."""
        layers = [m for m in self.modules() if isinstance(m, Linear) and m.rank > 0]
        for m in layers:
            m.lora_enabled = False
        try:
            yield self
        finally:
            for m in layers:
                m.lora_enabled = True

    def resize_vocab(self, vocab_size):
        """Grow the (tied) embedding to vocab_size rows, e.g. for added chat tokens.
        New rows start at the mean embedding, so they begin as an 'average' token."""
        old = self.transformer.wte.weight.data
        if vocab_size <= old.size(0):
            return
        new = old.mean(0, keepdim=True).repeat(vocab_size - old.size(0), 1)
        self.lm_head.weight = nn.Parameter(torch.cat([old, new]))
        self.transformer.wte.weight = self.lm_head.weight
        self.config.vocab_size = vocab_size

    # --- GPT-2 weights ------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, lora_rank=0, lora_alpha=16.0):
        """Load a GPT-2 folder in the Hugging Face layout (config.json, model.safetensors
        or pytorch_model.bin). HF's GPT-2 stores c_attn/c_proj/c_fc as Conv1D, whose
        weight is the transpose of nn.Linear's; that is the one transpose rule."""
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{path}: no config.json; a GPT-2 folder in the Hugging "
                                    "Face layout holds config.json, model.safetensors (or "
                                    "pytorch_model.bin) and tokenizer.json")
        try:
            with open(cfg_path, encoding="utf-8") as f:
                hf = json.load(f)
        except ValueError as e:  # not JSON, or not UTF-8: a truncated download, say
            raise ValueError(f"{cfg_path}: not valid JSON ({e})") from None
        if not isinstance(hf, dict):
            raise ValueError(f"{cfg_path}: not a JSON object of GPT-2 settings")
        needed = ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"]
        missing = [k for k in needed if k not in hf]
        if hf.get("model_type", "gpt2") != "gpt2" or missing:
            raise ValueError(f"{cfg_path}: not a GPT-2 config (model_type="
                             f"{hf.get('model_type')!r}, missing {missing}); only GPT-2-shaped "
                             "models load here")
        if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"{cfg_path}: activation {hf['activation_function']!r} is not "
                             "GPT-2's tanh GELU")
        config = GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"],
                           n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                           dropout=0.0, bias=True, lora_rank=lora_rank, lora_alpha=lora_alpha)
        try:
            model = cls(config)
        except ValueError as e:
            raise ValueError(f"{cfg_path}: {e}") from None
        sd_hf = _read_weights(path)
        sd = model.state_dict()
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                      "mlp.c_proj.weight")
        loaded = set()
        for key, w in sd_hf.items():
            name = key[len("transformer."):] if key.startswith("transformer.") else key
            if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
                continue  # causal-mask buffers; lm_head is tied to wte
            name = "transformer." + name
            if name not in sd:
                raise ValueError(f"{path}: unexpected weight {key!r} for a GPT-2 model")
            if name.endswith(transposed):
                w = w.t()
            if w.shape != sd[name].shape:
                raise ValueError(f"{path}: {key} has shape {tuple(w.shape)}, expected "
                                 f"{tuple(sd[name].shape)} from config.json")
            with torch.no_grad():
                sd[name].copy_(w.float())
            loaded.add(name)
        missing = [k for k in sd if k not in loaded and "lora_" not in k and k != "lm_head.weight"]
        if missing:
            raise ValueError(f"{path}: weights missing from the checkpoint: {missing[:5]}")
        return model


def _read_weights(path):
    """A state dict from model.safetensors (read by hand) or pytorch_model.bin."""
    st = os.path.join(path, "model.safetensors")
    if os.path.isfile(st):
        return read_safetensors(st)
    pt = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(pt):
        try:
            return torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # torch's text runs to several lines: keep its first
            first = (str(e).strip().splitlines() or [""])[0].split(". ")[0]
            raise ValueError(f"{pt}: not a readable PyTorch weights file (truncated?): "
                             f"{type(e).__name__}: {first[:200]}") from None
    raise FileNotFoundError(f"{path}: neither model.safetensors nor pytorch_model.bin found")


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
              "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(file):
    """The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw little-endian bytes."""
    with open(file, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{file}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{file}: header length {n} runs past the end of the file (truncated?)")
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        raise ValueError(f"{file}: its header is not valid JSON ({e})") from None
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if end > len(data) or info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{file}: tensor {name!r} is truncated or of unknown dtype")
        try:
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=_ST_DTYPES[info["dtype"]])
            out[name] = t.reshape(info["shape"])
        except (ValueError, RuntimeError) as e:  # bytes and shape disagree
            raise ValueError(f"{file}: tensor {name!r} does not match its header ({e})") from None
    return out


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: python model.py GPT2_FOLDER (a checkpoint: python common.py CKPT)")
    if os.path.isfile(argv[0]):
        sys.exit(f"error: {argv[0]}: a file; python model.py reads a GPT-2 folder (a "
                 "checkpoint: python common.py CKPT)")
    m = GPT.from_pretrained(argv[0])
    print(m.config, f"\n{m.num_params() / 1e6:.2f}M parameters")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
