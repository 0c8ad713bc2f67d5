"""Shared fixtures: tiny random GPTs that run in milliseconds on a CPU."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model import GPT, GPTConfig  # noqa: E402


def make_tiny(vocab_size=64, block_size=48, n_layer=2, n_head=2, n_embd=32, seed=0, **kw):
    """A tiny GPT whose weights are scaled up so its outputs are far from uniform: with
    GPT-2's 0.02 init every token is nearly equally likely and argmax ties hide bugs."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                          n_head=n_head, n_embd=n_embd, **kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "lora_" not in name:
                p.normal_(0.0, 0.3)
    return model.eval()


@pytest.fixture
def tiny():
    return make_tiny()
