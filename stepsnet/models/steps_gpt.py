"""A pre-norm causal Transformer language model and its Step by Step version.

Step by Step Network (StepsNet), arXiv:2511.14329, Table 4. The baseline is a GPT-style decoder: token and learned
position embeddings, ``n_layer`` pre-norm blocks (causal self-attention, then a GELU MLP), a final LayerNorm and
an output projection tied to the token embedding. The Steps version keeps everything but the trunk, which
becomes a :class:`stepsnet.steps.Steps` of the same blocks built by :func:`stepsnet.steps.plan_steps` with the
3-step DeiT pattern: ``d/2 x D, d/sqrt2 x D/2, d x D/2`` (``D / 2`` blocks moved per substitution), widths
rounded to multiples of 8 that the step's head count divides, head counts from the planner.

A plain model is the same code with a one-step plan, so both models share every line but the plan.

The paper gives neither widths nor context length; the named sizes fit its parameter counts with the GPT-2 BPE
vocabulary (50257 tokens) and a 512-token context:

========  =====================  =========================================
name      baseline               Steps
========  =====================  =========================================
small     384/H6 x6    (30M)     192/H3 x6, 272/H4 x3, 384/H6 x3   (30M)
medium    512/H8 x6    (45M)     256/H4 x6, 360/H6 x3, 512/H8 x3   (45M)
large     512/H8 x12   (64M)     256/H4 x12, 360/H6 x6, 512/H8 x6  (64M)
========  =====================  =========================================
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from stepsnet.steps import StepPlan, Steps, plan_steps
from stepsnet.utils.names import did_you_mean

__all__ = [
    'GPTConfig', 'GPT', 'CausalSelfAttention', 'MLP', 'Block', 'LM_CONFIGS', 'PAPER_TABLE4', 'lm_config', 'create_lm',
    'list_lms',
]


@dataclass
class GPTConfig:
    """Hyper-parameters of a (Steps) GPT.

    Attributes:
        vocab_size: Number of token ids (256 for bytes, 50257 for GPT-2 BPE).
        block_size: Longest context the model accepts (learned position embeddings of this length).
        n_layer: Baseline block count ``D``; the Steps trunk has ``D + (num_steps - 1) * steps_move`` blocks.
        n_head: Baseline heads at width ``n_embd``; each step's heads come from the planner.
        n_embd: Trunk width ``d`` (the last step's width).
        mlp_ratio: MLP hidden width over the block width.
        dropout: Dropout on embeddings, attention weights and residual branches.
        bias: Biases in linear layers and LayerNorms.
        num_steps: Number of steps; 1 is the plain residual Transformer.
        steps_move: Blocks moved per substitution ``k``; None means ``n_layer // 2`` (the paper's pattern).
        step_heads: Optional explicit heads per step width, e.g. ``{272: 4}``.
    """
    vocab_size: int = 50257
    block_size: int = 512
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    bias: bool = True
    num_steps: int = 1
    steps_move: Optional[int] = None
    step_heads: Optional[Dict[int, int]] = None

    def __post_init__(self):
        for name in ('vocab_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'num_steps'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'GPTConfig.{name} must be a positive integer, got {value!r}')
        if self.n_embd % self.n_head:
            raise ValueError(f'GPTConfig: n_head={self.n_head} does not divide n_embd={self.n_embd}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'GPTConfig.dropout must be in [0, 1), got {self.dropout}')
        if self.step_heads is not None:
            self.step_heads = {int(k): int(v) for k, v in self.step_heads.items()}

    @property
    def move(self) -> int:
        return self.steps_move if self.steps_move is not None else max(1, self.n_layer // 2)

    def plan(self) -> StepPlan:
        """The trunk's plan (a single step ``n_embd x n_layer`` for the baseline)."""
        return plan_steps(
            self.n_embd, self.n_layer, self.num_steps, self.move, heads=self.n_head, multiple_of=8,
            step_heads=self.step_heads)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'unknown GPTConfig fields {unknown}; expected a subset of {sorted(known)}')
        return cls(**dict(d))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention at one width.

    The fused kernel (``scaled_dot_product_attention``) is used by default; ``fused_attn = False`` selects the
    explicit ``softmax(q k^T / sqrt(h)) v`` path, which FLOP counters see and which must agree with the kernel.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'{num_heads} heads do not divide width {dim}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.attn_drop = dropout
        self.proj_drop = nn.Dropout(dropout)
        self.fused_attn = hasattr(F, 'scaled_dot_product_attention')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        drop = self.attn_drop if self.training else 0.0
        if self.fused_attn:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(future, float('-inf')).softmax(dim=-1)
            att = F.dropout(att, p=drop, training=self.training)
            y = att @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(dim, bias=bias)
        self.attn = CausalSelfAttention(dim, num_heads, dropout, bias)
        self.ln_2 = nn.LayerNorm(dim, bias=bias)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def check_token_ids(idx: torch.Tensor, block_size: int) -> None:
    """Refuse input that is not token ids of shape (batch, time), or a context longer than the model's."""
    if idx.dim() != 2:
        raise ValueError(f'the language model expects token ids of shape (batch, time), got shape {tuple(idx.shape)}')
    if idx.size(1) > block_size:
        raise ValueError(f'context of {idx.size(1)} tokens is longer than the model block_size {block_size}; '
                         f'expected at most {block_size}')


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the next-token logits, in float32; targets of -1 are left out."""
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


class GPT(nn.Module):
    """Causal Transformer LM; with ``config.num_steps > 1`` its trunk is a Step by Step Network.

    ``forward(idx, targets=None)`` returns ``(logits, loss)``: logits for every position when targets are given,
    otherwise only for the last position (all that generation needs); loss is None without targets.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.plan: StepPlan = config.plan()
        block_heads = self.plan.block_heads()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)

        def make_block(width: int, index: int) -> nn.Module:
            return Block(width, block_heads[index], config.mlp_ratio, config.dropout, config.bias)

        self.blocks = Steps(self.plan, make_block, dim=-1, channels=config.n_embd)
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: the output projection is the embedding matrix
        self.apply(self._init_weights)
        # Residual branches end in proj / fc2; scaling them by the real depth keeps the stream's variance bounded.
        scale = 0.02 / math.sqrt(2 * self.plan.num_blocks)
        for name, p in self.named_parameters():
            if name.endswith(('attn.proj.weight', 'mlp.fc2.weight')):
                nn.init.normal_(p, mean=0.0, std=scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def num_blocks(self) -> int:
        return self.plan.num_blocks

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights once); ``non_embedding`` leaves out the :meth:`embedding_weights`."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum({id(p): p.numel() for p in self.embedding_weights()}.values())
        return n

    def embedding_weights(self) -> Tuple[nn.Parameter, ...]:
        """The token and position tables (the output head is tied to the token table)."""
        return self.wte.weight, self.wpe.weight

    def set_fused_attn(self, enable: bool = True) -> None:
        for m in self.modules():
            if isinstance(m, CausalSelfAttention):
                m.fused_attn = enable

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.blocks.grad_checkpointing = enable

    def no_weight_decay(self) -> List[str]:
        """Names of parameters without weight decay: every vector (biases, norms); matrices decay."""
        return [n for n, p in self.named_parameters() if p.dim() < 2]

    def forward(
            self,
            idx: torch.Tensor,
            targets: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        check_token_ids(idx, self.config.block_size)
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        x = self.ln_f(self.blocks(x))
        if targets is None:
            return self.lm_head(x[:, -1:, :]), None
        logits = self.lm_head(x)
        return logits, next_token_loss(logits, targets)

    def flops_per_token(self, context: Optional[int] = None) -> Dict[str, float]:
        """Multiply-adds per token of one forward pass, counted analytically.

        Each block at width ``w`` costs ``(4 + 2 * mlp_ratio) * w**2`` in its linear layers plus ``2 * T * w`` in
        the two attention matmuls (full ``T x T``, as the paper counts ViT attention); the tied output
        projection costs ``n_embd * vocab_size``. Training costs about three forward passes (``6 *`` in FLOPs).

        Returns:
            ``{'forward_macs': ..., 'train_flops': ...}`` per token.
        """
        T = context or self.config.block_size
        r = self.config.mlp_ratio
        macs = sum((4 + 2 * r) * w * w + 2 * T * w for w in self.plan.block_widths())
        macs += self.config.n_embd * self.config.vocab_size
        return {'forward_macs': float(macs), 'train_flops': float(6 * macs)}

    @torch.no_grad()
    def generate(
            self,
            idx: torch.Tensor,
            max_new_tokens: int,
            temperature: float = 1.0,
            top_k: Optional[int] = None,
            generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (the context is cropped to ``block_size``)."""
        if temperature < 0:
            raise ValueError(f'temperature must be >= 0, got {temperature}')
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.config.block_size:]
            logits, _ = self(ctx)
            logits = logits[:, -1, :].float()
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float('-inf'))
                nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


# Named sizes. ``*_small/medium/large`` are Table 4 (GPT-2 vocabulary); ``*_cpu`` is the byte-level default of
# ``stepsnet compare``; ``*_tiny`` keeps tests fast.
_SIZES: Dict[str, Dict[str, Any]] = {
    'small': dict(vocab_size=50257, block_size=512, n_layer=6, n_head=6, n_embd=384),
    'medium': dict(vocab_size=50257, block_size=512, n_layer=6, n_head=8, n_embd=512),
    'large': dict(vocab_size=50257, block_size=512, n_layer=12, n_head=8, n_embd=512),
    'cpu': dict(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128),
    'tiny': dict(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=32),
}
LM_CONFIGS: Dict[str, Dict[str, Any]] = {}
for _size, _args in _SIZES.items():
    LM_CONFIGS[f'gpt_{_size}'] = dict(_args, num_steps=1)
    LM_CONFIGS[f'steps_gpt_{_size}'] = dict(_args, num_steps=3)

# Parameters (M) of Table 4.
PAPER_TABLE4: Dict[str, float] = {
    'gpt_small': 30, 'gpt_medium': 44, 'gpt_large': 63,
    'steps_gpt_small': 30, 'steps_gpt_medium': 45, 'steps_gpt_large': 64,
}


def list_lms() -> List[str]:
    return list(LM_CONFIGS)


def lm_config(name: str, **overrides: Any) -> GPTConfig:
    """The :class:`GPTConfig` of a named model (``gpt_small``, ``steps_gpt_large``, ...) with overrides."""
    if name not in LM_CONFIGS:
        raise ValueError(f'unknown language model {name!r}; expected one of {list_lms()}'
                         f'{did_you_mean(name, LM_CONFIGS)}')
    args = dict(LM_CONFIGS[name])
    args.update({k: v for k, v in overrides.items() if v is not None})
    return GPTConfig.from_dict(args)


def create_lm(name: str, **overrides: Any) -> GPT:
    """Build a named language model, e.g. ``create_lm('steps_gpt_small', vocab_size=256)``."""
    return GPT(lm_config(name, **overrides))
