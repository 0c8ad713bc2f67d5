"""
The model: a GPT-2 written from scratch, with a KV cache and optional LoRA, plus the
things every stage needs around it: the tokenizer, the chat format, checkpoints and the
device. Parameter names follow GPT-2 (wte, wpe, c_attn, c_proj, c_fc, ln_f), so loading
real GPT-2 weights is one loop with shape checks and one transpose rule. A model trained
from scratch may use rotary positions instead of wpe (GPTConfig.pos = "rope").

    from model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128))
    logits, loss = model(idx, targets)          # idx (B, T) -> logits (B, T, V)

Run `python model.py PATH` to print a checkpoint's or GPT-2 folder's config.
"""
import contextlib
import json
import math
import os
import struct
import sys
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from data.task import CHAT_TOKENS

IGNORE_INDEX = -100  # the one ignore index: targets with this value carry no loss


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


class KVCache:
    """Keys and values for every layer, preallocated once for prompt + new tokens.

    `lengths[b]` is how many positions of row b are filled, so rows with prompts of
    different lengths decode together: each row writes its next token at its own position.
    """

    def __init__(self, config, batch_size, max_len, device, dtype):
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.max_len = max_len

    def keep(self, rows):
        """Drop every row not in `rows` (a LongTensor of row indices), e.g. finished ones."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]
        self.lengths = self.lengths[rows]


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
            # every filled key up to and including the query's own position
            rows = torch.arange(B, device=x.device)[:, None]
            cache.k[layer, rows, :, pos] = k.transpose(1, 2).to(cache.k.dtype)
            cache.v[layer, rows, :, pos] = v.transpose(1, 2).to(cache.v.dtype)
            S = int(pos.max()) + 1                              # keys worth looking at
            keys = torch.arange(S, device=x.device)
            mask = keys[None, None, :] <= pos[:, :, None]       # (B, T, S)
            kk, vv = cache.k[layer, :, :, :S].to(q.dtype), cache.v[layer, :, :, :S].to(q.dtype)
            y = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask[:, None])
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

    def forward(self, idx, targets=None, cache=None):
        """idx (B, T) token ids -> logits (B, T, V) at every position, and the mean
        cross-entropy over targets (B, T) that are not IGNORE_INDEX (None without targets).

        With a KVCache, idx continues each row at its filled length: row b's tokens take
        positions cache.lengths[b] .. + T - 1, and cache.lengths grows by T.
        """
        logits = self.lm_head(self.hidden(idx, cache)).float()  # (B, T, V), fp32 for losses
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return logits, loss

    def hidden(self, idx, cache=None):
        """The final hidden states (B, T, C), before lm_head: for callers that need the
        logits at a few positions only (the judge reads one per row)."""
        B, T = idx.size()
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than the model's context "
                                 f"(block_size={self.config.block_size})")
            pos = torch.arange(T, device=idx.device)[None].expand(B, T)
        else:
            pos = cache.lengths[:, None] + torch.arange(T, device=idx.device)[None]  # (B, T)
            if int(pos.max()) >= min(cache.max_len, self.config.block_size):
                raise ValueError(f"KV cache full: position {int(pos.max())} is past "
                                 f"{min(cache.max_len, self.config.block_size)} positions")
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
            cache.lengths = cache.lengths + T
        return self.transformer.ln_f(x)

    # --- LoRA -----------------------------------------------------------------
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
        with open(cfg_path) as f:
            hf = json.load(f)
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
        model = cls(config)
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
        return torch.load(pt, map_location="cpu", weights_only=True)
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
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if end > len(data) or info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{file}: tensor {name!r} is truncated or of unknown dtype")
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=_ST_DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


# -----------------------------------------------------------------------------
# tokenizer and the chat format

def load_tokenizer(path, chat=True):
    """A `tokenizers.Tokenizer` from tokenizer.json (or a folder holding one). With chat,
    the chat tokens are added as special tokens when the file lacks them (e.g. GPT-2's);
    the model then needs `resize_vocab(tok.get_vocab_size())`."""
    from tokenizers import Tokenizer
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: tokenizer file not found")
    try:
        tok = Tokenizer.from_file(file)
    except Exception as e:
        raise ValueError(f"{file}: not a Hugging Face tokenizers file: {e}") from None
    return add_chat_tokens(tok) if chat else tok


def add_chat_tokens(tok):
    missing = [t for t in CHAT_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens(missing)
    return tok


def check_vocab(tok, model, where=""):
    """Every id the tokenizer can produce must have an embedding row."""
    n = tok.get_vocab_size(with_added_tokens=True)
    if n > model.config.vocab_size:
        raise ValueError(f"{where}tokenizer has {n} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}: the tokenizer does not belong to this "
                         "checkpoint (pass the checkpoint's own tokenizer, or resize the model)")


def chat_ids(tok):
    """(user, assistant, end) token ids; end is the stop token of every response."""
    return tuple(tok.token_to_id(t) for t in CHAT_TOKENS)


def encode_query(tok, prompt):
    """<|user|> prompt <|end|> <|assistant|>: ends exactly where the response starts."""
    user, assistant, end = chat_ids(tok)
    return [user] + tok.encode(prompt, add_special_tokens=False).ids + [end, assistant]


def encode_response(tok, response):
    """A response's ids followed by the stop token <|end|>, which belongs to the response."""
    return tok.encode(response, add_special_tokens=False).ids + [chat_ids(tok)[2]]


def decode_response(tok, ids):
    """Sampled ids -> text, cut at the first stop token."""
    end = chat_ids(tok)[2]
    ids = list(ids)
    if end in ids:
        ids = ids[:ids.index(end)]
    return tok.decode(ids, skip_special_tokens=True)


# -----------------------------------------------------------------------------
# batches and log-probabilities

def pad_right(seqs, value=0, device="cpu"):
    """Lists of token ids of any lengths -> (B, L) LongTensor, each row left-aligned and
    filled with `value` past its end. Every stage batches ragged sequences this way; the
    lengths say where each row ends (a pad id is never used to find the end)."""
    L = max(len(s) for s in seqs)
    out = torch.full((len(seqs), L), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def sequence_logprobs(logits, targets, mask):
    """Summed log-probability of each row's masked targets.

    logits (B, T, V), targets (B, T) token ids, mask (B, T) 1.0 where the target counts.
    Position t's logits predict targets[:, t] (shift before calling). Returns (B,) float32.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    tok_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (tok_logp * mask).sum(-1)


# -----------------------------------------------------------------------------
# checkpoints

def save_checkpoint(path, model, tok, meta, optimizer=None):
    """Config, weights, tokenizer JSON, meta (flags, step, ...) and optimizer state, written
    to a temporary file and renamed, so an interrupted save never leaves a broken file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # never save a compiled model's prefixed keys
    ckpt = {"format": "nano-self-judge/1", "config": asdict(model.config),
            "model": model.state_dict(), "tokenizer": tok.to_str(), "meta": meta,
            "optimizer": optimizer.state_dict() if optimizer is not None else None}
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, device="cpu"):
    """-> (model, tok, meta); meta["optimizer"] holds the optimizer state (or None)."""
    from tokenizers import Tokenizer
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found (train one first, e.g. "
                                "`python jsft.py`, or pass --init scratch)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)  # no code from files
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint (truncated or foreign file?): "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "nano-self-judge/1":
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
    return model.to(device), tok, meta


# -----------------------------------------------------------------------------
# settings: every script keeps its knobs in one `defaults` dict at the top

def parse_flags(defaults, argv=None, doc=""):
    """--name=value or --name value (a bare --name sets a bool to True). Each value takes
    its default's type; a default of None accepts anything. Unknown names are errors that
    list the known ones. Prints the resolved settings and returns them as a namespace."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = dict(defaults)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print((doc or "").strip() + "\n\nsettings (defaults):")
            for k, v in defaults.items():
                print(f"  --{k}={v}")
            sys.exit(0)
        if not arg.startswith("--"):
            sys.exit(f"error: unexpected argument {arg!r}; settings look like --name=value")
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
        i += 1
    print("settings: " + " ".join(f"{k}={v}" for k, v in cfg.items()))
    return _Namespace(cfg)


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


# -----------------------------------------------------------------------------
# device

def get_device(name="auto"):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 here)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python model.py CKPT_OR_GPT2_FOLDER")
    p = sys.argv[1]
    m = GPT.from_pretrained(p) if os.path.isdir(p) else load_checkpoint(p)[0]
    print(m.config, f"\n{m.num_params() / 1e6:.2f}M parameters")
