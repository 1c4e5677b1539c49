"""Language modelling: train, evaluate, sample, and compare a residual LM with its Steps version.

Everything here is a function with typed arguments; ``stepsnet train-lm`` / ``sample`` / ``compare`` only parse.

Training (:func:`train_lm`), top to bottom: join the process group when launched by ``torchrun``; open the token
memmaps and check them against the model's vocabulary and context; build the model (optionally compiled and
wrapped in DDP); AdamW with weight decay on matrices only; per iteration a linear warm-up then cosine learning
rate, ``grad_accum`` micro-batches under autocast (bf16, or fp16 with a gradient scaler, on GPU), clipping and a
step. Every batch is drawn from a generator seeded by ``(seed, iteration, micro-step, rank)`` and dropout's RNG is
reseeded the same way, so a run resumed from a checkpoint draws exactly the batches the uninterrupted run would
have drawn. A non-finite loss stops the run before the optimizer touches the weights; the last checkpoint is kept.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from stepsnet.data.text import TokenData, prepare_text, tokenizer_from_spec
from stepsnet.models.steps_gpt import GPT, GPTConfig, lm_config
from stepsnet.utils.checkpoint import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from stepsnet.utils.config import load_dataclass_config
from stepsnet.utils.distributed import DistEnv, all_reduce_mean, barrier, cleanup_distributed, setup_distributed
from stepsnet.utils.logging import MetricWriter

__all__ = [
    'TrainConfig', 'train_lm', 'evaluate_lm', 'load_lm', 'sample_lm', 'CompareConfig', 'compare_lm',
    'load_train_config', 'PEAK_FLOPS', 'CHECKPOINT_KIND', 'DEFAULT_DATA_DIR',
]

CHECKPOINT_KIND = 'stepsnet-lm'
CHECKPOINT_NAME = 'ckpt.pt'
DEFAULT_DATA_DIR = os.path.join('runs', 'data', 'stdlib-byte')

# Dense bf16/fp16 tensor-core peak FLOP/s per device, for MFU. Matched against torch.cuda.get_device_name().
PEAK_FLOPS: Dict[str, float] = {
    'H200': 989e12, 'H100': 989e12, 'A100': 312e12, 'A10': 125e12, 'L40': 181e12, 'L4': 121e12,
    'V100': 125e12, 'T4': 65e12, 'RTX 4090': 165e12, 'RTX 3090': 71e12, 'A6000': 155e12,
}


@dataclass
class TrainConfig:
    """One language-model training run.

    Attributes:
        data_dir: Folder written by ``stepsnet data prepare-text``.
        out_dir: Where ``ckpt.pt``, ``log.csv``, ``config.json`` (and ``tb/``) go.
        model: Named model (``gpt_small``, ``steps_gpt_cpu``, ...); see :data:`stepsnet.models.steps_gpt.LM_CONFIGS`.
        model_args: Overrides of the model's :class:`GPTConfig` (e.g. ``{'dropout': 0.1}``); ``vocab_size``
            defaults to the data's.
        block_size: Training context; None uses the model's (it may not exceed it).
        batch_size: Sequences per micro-batch per process.
        grad_accum: Micro-batches per optimizer step.
        max_iters: Optimizer steps.
        lr: Peak learning rate.
        min_lr: Final learning rate of the cosine (None: ``lr / 10``).
        warmup_iters: Linear warm-up steps.
        weight_decay: AdamW decay on matrices (vectors never decay).
        beta1: AdamW beta1.
        beta2: AdamW beta2.
        grad_clip: Global gradient-norm clip (0 disables).
        eval_interval: Evaluate (and checkpoint) every this many steps.
        eval_iters: Validation batches per evaluation.
        final_eval_windows: Non-overlapping validation windows scored at the end (0 skips the final evaluation).
        log_interval: Log training loss every this many steps.
        checkpoint_interval: Checkpoint every this many steps (None: ``eval_interval``); always at the end.
        seed: Seeds initialisation, batches and dropout.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        dtype: ``auto`` (bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU), ``float32``, ``bfloat16``,
            ``float16``.
        compile: Wrap the model in ``torch.compile``.
        resume: Continue from ``out_dir/ckpt.pt``; without it an existing checkpoint is never overwritten.
        time_limit: Stop after this many seconds of training (evaluation excluded); None: no limit.
        peak_flops: Peak FLOP/s of one device for MFU; None looks the GPU up in :data:`PEAK_FLOPS`.
        progress: Show a progress bar.
        tensorboard: Also log to TensorBoard when it is installed.
        fused_attn: Use the fused attention kernel (False: the explicit path).
    """
    data_dir: str = DEFAULT_DATA_DIR
    out_dir: str = os.path.join('runs', 'lm')
    model: str = 'gpt_cpu'
    model_args: Dict[str, Any] = field(default_factory=dict)
    block_size: Optional[int] = None
    batch_size: int = 32
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 2e-3
    min_lr: Optional[float] = None
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    final_eval_windows: int = 1024
    log_interval: int = 10
    checkpoint_interval: Optional[int] = None
    seed: int = 1337
    device: str = 'auto'
    dtype: str = 'auto'
    compile: bool = False
    resume: bool = False
    time_limit: Optional[float] = None
    peak_flops: Optional[float] = None
    progress: bool = True
    tensorboard: bool = True
    fused_attn: bool = True

    def __post_init__(self):
        for name in ('batch_size', 'grad_accum', 'eval_interval', 'eval_iters', 'log_interval'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'TrainConfig.{name} must be >= 1, got {getattr(self, name)}')
        if self.max_iters < 0 or self.warmup_iters < 0:
            raise ValueError(f'max_iters and warmup_iters must be >= 0, got {self.max_iters}, {self.warmup_iters}')
        if self.lr <= 0:
            raise ValueError(f'lr must be > 0, got {self.lr}')
        if self.dtype not in ('auto', 'float32', 'bfloat16', 'float16'):
            raise ValueError(f"dtype {self.dtype!r} is not one of 'auto', 'float32', 'bfloat16', 'float16'")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(path: Optional[str] = None, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (its keys are the dataclass fields) plus overrides."""
    return load_dataclass_config(TrainConfig, path, overrides)


# ----------------------------------------------------------------------------------------------------------------
# Training


def _lr_at(it: int, cfg: TrainConfig) -> float:
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (it - cfg.warmup_iters) / span)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def _seed_for(seed: int, it: int, micro: int, rank: int) -> int:
    return (seed * 1_000_003 + it * 7919 + micro * 104_729 + rank * 15_485_863) % (2 ** 63 - 1)


def _resolve_dtype(cfg: TrainConfig, device: str) -> torch.dtype:
    if cfg.dtype != 'auto':
        return getattr(torch, cfg.dtype)
    if device.startswith('cuda'):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type='cuda' if device.startswith('cuda') else 'cpu', dtype=dtype)


def _peak_flops(cfg: TrainConfig, device: str) -> Optional[float]:
    if cfg.peak_flops:
        return float(cfg.peak_flops)
    if device.startswith('cuda'):
        name = torch.cuda.get_device_name(torch.device(device))
        for key, value in PEAK_FLOPS.items():
            if key in name:
                return value
    return None


def _build_optimizer(model: GPT, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{'params': decay, 'weight_decay': cfg.weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
    extra = {'fused': True} if device.startswith('cuda') else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **extra)


def _model_config_for(cfg: TrainConfig, data_vocab: int) -> GPTConfig:
    args = dict(cfg.model_args)
    args.setdefault('vocab_size', data_vocab)
    return lm_config(cfg.model, **args)


@torch.no_grad()
def _estimate_val_loss(model: nn.Module, data: TokenData, cfg: TrainConfig, block: int, device: str,
                       dtype: torch.dtype, rank: int) -> float:
    """Mean validation loss over ``eval_iters`` fixed batches (the same batches at every evaluation)."""
    model.eval()
    g = torch.Generator().manual_seed(_seed_for(cfg.seed + 1, 0, 0, rank))
    losses = torch.zeros(cfg.eval_iters)
    for k in range(cfg.eval_iters):
        x, y = data.get_batch('val', cfg.batch_size, block, g)
        with _autocast(device, dtype):
            _, loss = model(x.to(device), y.to(device))
        losses[k] = loss.float().item()
    model.train()
    return float(all_reduce_mean(losses.mean().to(device)).item())


@torch.no_grad()
def evaluate_lm(
        model: GPT,
        data: TokenData,
        split: str = 'val',
        block_size: Optional[int] = None,
        max_windows: int = 1024,
        batch_size: int = 32,
        device: str = 'cpu',
        dtype: torch.dtype = torch.float32,
) -> Dict[str, float]:
    """Loss, perplexity and bits per byte over non-overlapping windows spread evenly over a split.

    The windows are fixed by the split's length, ``block_size`` and ``max_windows``, so two models scored with
    the same arguments see exactly the same tokens. Bits per byte use the split's bytes per token from the
    metadata (exact for byte-level data).
    """
    if split not in data.splits:
        raise ValueError(f'split {split!r} is not in {data.root!r}; expected one of {sorted(data.splits)}')
    block = block_size or model.config.block_size
    arr = data.splits[split]
    total = (len(arr) - 1) // block
    if total < 1:
        raise ValueError(f'{split} split has {len(arr)} tokens, fewer than one window of {block + 1}')
    n = min(total, max_windows)
    starts = (np.linspace(0, total - 1, n).round().astype(np.int64) * block).tolist()
    was_training = model.training
    model.eval()
    loss_sum, count = 0.0, 0
    for i in range(0, n, batch_size):
        buf = np.stack([np.asarray(arr[s:s + block + 1], dtype=np.int64) for s in starts[i:i + batch_size]])
        t = torch.from_numpy(buf).to(device)
        with _autocast(device, dtype):
            _, loss = model(t[:, :-1], t[:, 1:])
        loss_sum += loss.float().item() * t.size(0) * block
        count += t.size(0) * block
    model.train(was_training)
    loss = loss_sum / count
    tokens = data.meta.get('tokens', {}).get(split)
    nbytes = data.meta.get('bytes', {}).get(split)
    bpb = loss / math.log(2) * (tokens / nbytes) if tokens and nbytes else float('nan')
    return {'loss': loss, 'ppl': math.exp(min(loss, 50.0)), 'bpb': bpb, 'tokens': count}


def _checkpoint_state(raw: GPT, optimizer, scaler, it: int, tokens_seen: int, best: float, cfg: TrainConfig,
                      data: TokenData, elapsed: float) -> Dict[str, Any]:
    return {
        'model': raw.state_dict(),
        'optimizer': optimizer.state_dict(),
        'scaler': scaler.state_dict() if scaler is not None else None,
        'iter': it,
        'tokens_seen': tokens_seen,
        'best_val_loss': best,
        'elapsed': elapsed,
        'model_name': cfg.model,
        'model_config': raw.config.to_dict(),
        'train_config': json.dumps(cfg.to_dict()),
        'tokenizer': json.dumps(data.meta['tokenizer']),
        'tokenizer_json': data.tokenizer_json() or '',
    }


def _load_model_state(model: GPT, state: Dict[str, Any], path: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else ''
        raise CheckpointError(
            f'checkpoint {path!r} does not fit the model {model.config} ({first}); expected the same architecture'
        ) from e


def train_lm(cfg: TrainConfig) -> Dict[str, Any]:
    """Train a language model; returns a summary (losses, tokens, throughput, paths).

    Raises:
        FileNotFoundError: Missing data folder or files.
        ValueError: Bad data (ids not below the vocabulary, too short), a context longer than the model's, an
            existing checkpoint without ``resume``, a checkpoint of another architecture.
        FloatingPointError: The training loss became NaN or infinite (the last checkpoint is left intact).
    """
    env = setup_distributed(cfg.device)
    try:
        return _train(cfg, env)
    finally:
        cleanup_distributed()


def _train(cfg: TrainConfig, env: DistEnv) -> Dict[str, Any]:
    from tqdm import tqdm
    device = env.device
    dtype = _resolve_dtype(cfg, device)
    meta_data = TokenData.open(cfg.data_dir)
    mcfg = _model_config_for(cfg, meta_data.vocab_size)
    meta_data.check_vocab(mcfg.vocab_size)
    block = cfg.block_size or mcfg.block_size
    if block > mcfg.block_size:
        raise ValueError(
            f'training context block_size={block} is longer than the model {cfg.model!r} context '
            f'{mcfg.block_size}; expected at most {mcfg.block_size}')
    meta_data.check_context(block, 'train')
    meta_data.check_context(block, 'val')
    data = meta_data

    ckpt_path = os.path.join(cfg.out_dir, CHECKPOINT_NAME)
    state = None
    if os.path.exists(ckpt_path):
        if not cfg.resume:
            raise ValueError(
                f'{ckpt_path!r} already exists; pass resume (--resume) to continue it or choose another out_dir')
        state = load_checkpoint(ckpt_path, CHECKPOINT_KIND, required=('model', 'optimizer', 'iter', 'model_config'))
        saved = GPTConfig.from_dict(state['model_config'])
        if saved != mcfg:
            raise CheckpointError(
                f'checkpoint {ckpt_path!r} holds model {saved}, but this run builds {mcfg}; expected the same model')

    torch.manual_seed(cfg.seed)
    model = GPT(mcfg).to(device)
    model.set_fused_attn(cfg.fused_attn)
    optimizer = _build_optimizer(model, cfg, device)
    scaler = torch.amp.GradScaler('cuda') if dtype == torch.float16 and device.startswith('cuda') else None
    start_iter, tokens_seen, best, elapsed_before = 0, 0, float('inf'), 0.0
    if state is not None:
        _load_model_state(model, state['model'], ckpt_path)
        try:
            optimizer.load_state_dict(state['optimizer'])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f'optimizer state in {ckpt_path!r} does not fit ({e})') from e
        if scaler is not None and state.get('scaler'):
            scaler.load_state_dict(state['scaler'])
        start_iter = int(state['iter'])
        tokens_seen = int(state.get('tokens_seen', 0))
        best = float(state.get('best_val_loss', float('inf')))
        elapsed_before = float(state.get('elapsed', 0.0))
        state = None

    raw = model
    if cfg.compile:
        model = torch.compile(model)
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[env.local_rank] if device.startswith('cuda') else None)

    writer = None
    if env.is_main:
        os.makedirs(cfg.out_dir, exist_ok=True)
        atomic_write_text(os.path.join(cfg.out_dir, 'config.json'), json.dumps(
            {'train': cfg.to_dict(), 'model': mcfg.to_dict(), 'params': raw.num_params(), 'plan': str(raw.plan),
             'world_size': env.world_size, 'device': device, 'dtype': str(dtype), 'torch': torch.__version__},
            indent=2))
        writer = MetricWriter(cfg.out_dir, tensorboard=cfg.tensorboard)
        writer.csv.truncate_after(start_iter)

    tokens_per_iter = cfg.batch_size * block * cfg.grad_accum * env.world_size
    flops_per_token = raw.flops_per_token(block)['train_flops']
    peak = _peak_flops(cfg, device)
    bar = tqdm(total=cfg.max_iters, initial=start_iter, disable=not (cfg.progress and env.is_main),
               desc=cfg.model, dynamic_ncols=True, leave=False)
    history: List[Dict[str, Any]] = []
    last_val: Optional[float] = None
    stopped_by_time = False
    train_time = 0.0
    interval_t0, interval_tokens = time.perf_counter(), 0
    ckpt_every = cfg.checkpoint_interval or cfg.eval_interval

    def save(it: int) -> None:
        if env.is_main:
            save_checkpoint(_checkpoint_state(raw, optimizer, scaler, it, tokens_seen, best, cfg, data,
                                              elapsed_before + train_time), ckpt_path, CHECKPOINT_KIND)
        barrier()

    model.train()
    it = start_iter
    while it < cfg.max_iters:
        t0 = time.perf_counter()
        lr = _lr_at(it, cfg)
        for group in optimizer.param_groups:
            group['lr'] = lr
        torch.manual_seed(_seed_for(cfg.seed, it, 0, env.rank))  # dropout draws depend only on the iteration
        loss_acc = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            g = torch.Generator().manual_seed(_seed_for(cfg.seed, it, micro, env.rank))
            x, y = data.get_batch('train', cfg.batch_size, block, g)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = contextlib.nullcontext()
            if env.distributed and micro < cfg.grad_accum - 1:
                sync = model.no_sync()
            with sync:
                with _autocast(device, dtype):
                    _, loss = model(x, y)
                    loss = loss / cfg.grad_accum
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            loss_acc += loss.detach().float()
        loss_value = float(all_reduce_mean(loss_acc).item())
        if not math.isfinite(loss_value):
            bar.close()
            if writer is not None:
                writer.close()
            kept = f'the last good checkpoint {ckpt_path!r} is left intact' if os.path.exists(ckpt_path) else \
                'no checkpoint was written yet'
            raise FloatingPointError(
                f'training loss is {loss_value} at iteration {it + 1} of {cfg.model!r} (lr {lr:.3g}); stopping '
                f'before the update; {kept}. Lower the learning rate or use gradient clipping.')
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = float('nan')
        if cfg.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip))
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        it += 1
        tokens_seen += tokens_per_iter
        interval_tokens += tokens_per_iter
        train_time += time.perf_counter() - t0
        bar.update(1)

        if it % cfg.log_interval == 0 or it == cfg.max_iters:
            dt = time.perf_counter() - interval_t0
            tps = interval_tokens / dt if dt > 0 else float('nan')
            mfu = tps * flops_per_token / (peak * env.world_size) if peak else float('nan')
            row = {'iter': it, 'tokens': tokens_seen, 'lr': lr, 'train_loss': loss_value, 'grad_norm': grad_norm,
                   'tokens_per_s': tps, 'mfu': mfu, 'time': elapsed_before + train_time}
            history.append(row)
            if writer is not None:
                writer.log(row)
            post = {'loss': f'{loss_value:.3f}', 'tok/s': f'{tps:,.0f}'}
            if peak:
                post['mfu'] = f'{100 * mfu:.1f}%'
            bar.set_postfix(post)
            interval_t0, interval_tokens = time.perf_counter(), 0

        out_of_time = cfg.time_limit is not None and train_time >= cfg.time_limit
        if it % cfg.eval_interval == 0 or it == cfg.max_iters or out_of_time:
            last_val = _estimate_val_loss(model, data, cfg, block, device, dtype, env.rank)
            best = min(best, last_val)
            row = {'iter': it, 'tokens': tokens_seen, 'val_loss': last_val, 'val_ppl': math.exp(min(last_val, 50.0)),
                   'time': elapsed_before + train_time}
            history.append(row)
            if writer is not None:
                writer.log(row)
            bar.set_postfix({'loss': f'{loss_value:.3f}', 'val': f'{last_val:.3f}'})
            interval_t0 = time.perf_counter()
        if it % ckpt_every == 0 or it == cfg.max_iters or out_of_time:
            save(it)
            interval_t0 = time.perf_counter()
        if out_of_time:
            stopped_by_time = True
            break
    bar.close()
    if it == start_iter and not os.path.exists(ckpt_path):
        save(it)

    final: Dict[str, float] = {}
    if cfg.final_eval_windows > 0 and env.is_main:
        final = evaluate_lm(raw, data, 'val', block, cfg.final_eval_windows, cfg.batch_size, device, dtype)
    if writer is not None:
        writer.close()
    summary = {
        'model': cfg.model,
        'params': raw.num_params(),
        'plan': str(raw.plan),
        'blocks': raw.num_blocks,
        'iters': it,
        'tokens_seen': tokens_seen,
        'train_time_s': elapsed_before + train_time,
        'tokens_per_s': (tokens_seen - start_iter * tokens_per_iter) / train_time if train_time > 0 else float('nan'),
        'flops_per_token': raw.flops_per_token(block)['forward_macs'],
        'last_val_loss': last_val,
        'final': final,
        'stopped_by_time': stopped_by_time,
        'checkpoint': ckpt_path,
        'out_dir': cfg.out_dir,
        'world_size': env.world_size,
        'history': history,
    }
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints -> models, sampling


def load_lm(path: str, device: str = 'cpu') -> Tuple[GPT, Any, Dict[str, Any]]:
    """Load a trained model and its tokenizer from a checkpoint written by :func:`train_lm`.

    Returns:
        (model in eval mode, tokenizer, checkpoint state without the weights).
    """
    state = load_checkpoint(path, CHECKPOINT_KIND, required=('model', 'model_config', 'tokenizer'),
                            map_location=device)
    try:
        mcfg = GPTConfig.from_dict(state['model_config'])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'checkpoint {path!r} has an invalid model config ({e})') from e
    model = GPT(mcfg)
    _load_model_state(model, state['model'], path)
    model.to(device).eval()
    tokenizer = tokenizer_from_spec(json.loads(state['tokenizer']), state.get('tokenizer_json') or None)
    info = {k: v for k, v in state.items() if k not in ('model', 'optimizer', 'scaler')}
    return model, tokenizer, info


def sample_lm(
        checkpoint: str,
        prompt: str = '\n',
        max_new_tokens: int = 200,
        num_samples: int = 1,
        temperature: float = 0.8,
        top_k: Optional[int] = 50,
        seed: int = 1337,
        device: str = 'cpu',
) -> List[str]:
    """Generate ``num_samples`` continuations of ``prompt`` (the prompt included) from a checkpoint."""
    model, tok, _ = load_lm(checkpoint, device)
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError('the prompt encodes to no tokens; expected at least one character')
    x = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, generator=g)
    return [tok.decode(row.tolist()) for row in out]


# ----------------------------------------------------------------------------------------------------------------
# Residual LM vs Steps LM


@dataclass
class CompareConfig:
    """A residual-vs-Steps language-model comparison at equal parameters, tokens and budget.

    Attributes:
        out: Output folder for ``report.md``, ``results.json``, ``loss_curves.png`` and each run.
        minutes: Training budget per model and seed. Both models train for the same number of steps on the same
            batches; the step count is what the slower model can do in this time (measured before training).
        seeds: Seeds; each trains both models.
        config: YAML training config (``configs/lm/cpu.yaml`` by default); its ``model`` is ignored.
        baseline: Named residual model.
        steps: Named Steps model.
        data_dir: Prepared data; the embedded corpus is prepared there when it is missing.
        device: ``auto``, ``cpu``, ``cuda``.
        max_iters: Fix the step count instead of deriving it from ``minutes``.
        progress: Progress bars.
    """
    out: str = os.path.join('runs', 'compare')
    minutes: float = 3.5
    seeds: Sequence[int] = (0,)
    config: Optional[str] = None
    baseline: str = 'gpt_cpu'
    steps: str = 'steps_gpt_cpu'
    data_dir: Optional[str] = None
    device: str = 'auto'
    max_iters: Optional[int] = None
    progress: bool = True


def default_config_path() -> Optional[str]:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(here, 'configs', 'lm', 'cpu.yaml')
    return path if os.path.isfile(path) else None


def _measure_step_time(cfg: TrainConfig, data: TokenData, steps: int = 3) -> float:
    """Seconds per optimizer step of ``cfg``'s model (median of ``steps`` after one warm-up), no side effects."""
    device = 'cuda' if cfg.device == 'auto' and torch.cuda.is_available() else cfg.device
    device = 'cpu' if device == 'auto' else device
    dtype = _resolve_dtype(cfg, device)
    mcfg = _model_config_for(cfg, data.vocab_size)
    torch.manual_seed(cfg.seed)
    model = GPT(mcfg).to(device)
    model.set_fused_attn(cfg.fused_attn)
    opt = _build_optimizer(model, cfg, device)
    block = cfg.block_size or mcfg.block_size
    g = torch.Generator().manual_seed(cfg.seed)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        for _ in range(cfg.grad_accum):
            x, y = data.get_batch('train', cfg.batch_size, block, g)
            with _autocast(device, dtype):
                _, loss = model(x.to(device), y.to(device))
            (loss / cfg.grad_accum).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _ensure_data(data_dir: str) -> None:
    if os.path.isfile(os.path.join(data_dir, 'meta.json')):
        return
    if os.path.normpath(data_dir) != os.path.normpath(DEFAULT_DATA_DIR):
        raise FileNotFoundError(
            f'data folder {data_dir!r} has no meta.json; prepare it with `stepsnet data prepare-text --out {data_dir}`')
    print(f'preparing the embedded corpus (Python standard library, byte-level) into {data_dir} ...', flush=True)
    prepare_text(data_dir)


def compare_lm(cc: CompareConfig) -> Dict[str, Any]:
    """Train the residual LM and the Steps LM on the same tokens with the same budget; write a report.

    Returns:
        The content of ``results.json``.
    """
    if cc.minutes <= 0:
        raise ValueError(f'minutes must be > 0, got {cc.minutes}')
    if not cc.seeds:
        raise ValueError('seeds must name at least one seed')
    t_start = time.time()
    config_path = cc.config or default_config_path()
    base_cfg = load_train_config(config_path)
    data_dir = cc.data_dir or base_cfg.data_dir
    _ensure_data(data_dir)
    data = TokenData.open(data_dir)
    cfgs = {}
    for role, name in (('baseline', cc.baseline), ('steps', cc.steps)):
        cfgs[role] = dataclasses.replace(base_cfg, model=name, data_dir=data_dir, device=cc.device, resume=False,
                                         progress=cc.progress, tensorboard=False)
    models = {r: GPT(_model_config_for(c, data.vocab_size)) for r, c in cfgs.items()}
    p_base, p_steps = models['baseline'].num_params(), models['steps'].num_params()
    if abs(p_base - p_steps) > 0.02 * p_base:
        print(f'warning: {cc.baseline} has {p_base:,} parameters and {cc.steps} {p_steps:,} '
              f'({100 * (p_steps / p_base - 1):+.1f}%); a fair comparison needs equal counts', flush=True)

    if cc.max_iters is not None:
        iters = int(cc.max_iters)
        step_times = {}
    else:
        step_times = {r: _measure_step_time(c, data) for r, c in cfgs.items()}
        # The slower model sets the shared step count; 8% of the time is kept for step-time noise.
        iters = max(1, int(cc.minutes * 60 * 0.92 / max(step_times.values())))
    print(f'{cc.baseline} ({p_base / 1e6:.2f}M params) vs {cc.steps} ({p_steps / 1e6:.2f}M params): '
          f'{iters} steps of {base_cfg.batch_size * base_cfg.grad_accum} x {cfgs["baseline"].block_size or "ctx"} '
          f'tokens each, {len(cc.seeds)} seed(s)', flush=True)

    runs: Dict[str, List[Dict[str, Any]]] = {'baseline': [], 'steps': []}
    for seed in cc.seeds:
        for role in ('baseline', 'steps'):
            out_dir = os.path.join(cc.out, f'seed{seed}', cfgs[role].model)
            if os.path.exists(os.path.join(out_dir, CHECKPOINT_NAME)):
                os.replace(os.path.join(out_dir, CHECKPOINT_NAME), os.path.join(out_dir, 'ckpt.previous.pt'))
                log = os.path.join(out_dir, 'log.csv')
                if os.path.exists(log):
                    os.replace(log, os.path.join(out_dir, 'log.previous.csv'))
            cfg = dataclasses.replace(
                cfgs[role], out_dir=out_dir, seed=seed, max_iters=iters,
                warmup_iters=min(cfgs[role].warmup_iters, max(1, iters // 10)),
                eval_interval=max(1, min(cfgs[role].eval_interval, iters // 6)),
                time_limit=cc.minutes * 60 * 1.05 if cc.max_iters is None else None)
            summary = train_lm(cfg)
            runs[role].append(summary)
            fin = summary['final']
            print(f'  seed {seed} {cfg.model:>16}: val loss {fin.get("loss", float("nan")):.4f} '
                  f'(ppl {fin.get("ppl", float("nan")):.3f}), {summary["tokens_seen"]:,} tokens, '
                  f'{summary["tokens_per_s"]:,.0f} tok/s, {summary["train_time_s"]:.0f} s', flush=True)
    results = _summarise(cc, runs, data, iters, step_times, base_cfg, config_path, time.time() - t_start)
    os.makedirs(cc.out, exist_ok=True)
    atomic_write_text(os.path.join(cc.out, 'results.json'), json.dumps(results, indent=2))
    _plot(runs, os.path.join(cc.out, 'loss_curves.png'))
    report = _report(results)
    atomic_write_text(os.path.join(cc.out, 'report.md'), report)
    print(_table(results))
    print(f'wrote {os.path.join(cc.out, "report.md")}, results.json and loss_curves.png '
          f'({results["wall_time_s"] / 60:.1f} min)')
    return results


def _stats(values: Sequence[float]) -> Tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _summarise(cc, runs, data, iters, step_times, base_cfg, config_path, wall) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        'task': 'lm',
        'data': {'dir': data.root, 'tokenizer': data.meta['tokenizer'], 'tokens': data.meta.get('tokens'),
                 'source': data.meta.get('source', {}).get('kind')},
        'uniform_loss': math.log(data.vocab_size),
        'iters': iters,
        'minutes_per_model': cc.minutes if cc.max_iters is None else None,
        'seeds': list(cc.seeds),
        'config': config_path,
        'train': {k: v for k, v in base_cfg.to_dict().items() if k not in ('model', 'out_dir', 'data_dir')},
        'measured_step_time_s': step_times,
        'device': 'cuda' if cc.device == 'auto' and torch.cuda.is_available() else
        ('cpu' if cc.device == 'auto' else cc.device),
        'threads': torch.get_num_threads(),
        'torch': torch.__version__,
        'wall_time_s': wall,
    }
    for role, rs in runs.items():
        losses = [r['final'].get('loss', float('nan')) for r in rs]
        mean, std = _stats(losses)
        out[role] = {
            'name': rs[0]['model'],
            'params': rs[0]['params'],
            'plan': rs[0]['plan'],
            'blocks': rs[0]['blocks'],
            'flops_per_token': rs[0]['flops_per_token'],
            'val_loss': mean,
            'val_loss_std': std,
            'val_ppl': math.exp(mean),
            'val_bpb': float(np.mean([r['final'].get('bpb', float('nan')) for r in rs])),
            'tokens_seen': int(np.mean([r['tokens_seen'] for r in rs])),
            'tokens_per_s': float(np.mean([r['tokens_per_s'] for r in rs])),
            'train_time_s': float(np.mean([r['train_time_s'] for r in rs])),
            'per_seed': [{'seed': s, 'val_loss': r['final'].get('loss'), 'tokens_seen': r['tokens_seen'],
                          'iters': r['iters'], 'stopped_by_time': r['stopped_by_time']}
                         for s, r in zip(cc.seeds, rs)],
        }
    b, s = out['baseline']['val_loss'], out['steps']['val_loss']
    out['delta_val_loss'] = s - b
    diffs = [rs['final'].get('loss', float('nan')) - rb['final'].get('loss', float('nan'))
             for rb, rs in zip(runs['baseline'], runs['steps'])]
    out['delta_val_loss_per_seed'] = diffs
    out['delta_val_loss_std'] = _stats(diffs)[1]
    return out


def _table(r: Dict[str, Any]) -> str:
    rows = [('model', 'name'), ('params', 'params'), ('plan', 'plan'), ('blocks', 'blocks'),
            ('FLOPs/token (MACs, fwd)', 'flops_per_token'), ('tokens seen', 'tokens_seen'),
            ('tokens/s', 'tokens_per_s'), ('val loss', 'val_loss'), ('val ppl', 'val_ppl'),
            ('val bits/byte', 'val_bpb')]
    n = len(r['seeds'])

    def fmt(key: str, m: Dict[str, Any]) -> str:
        v = m[key]
        if key == 'params':
            return f'{v / 1e6:.3f}M'
        if key == 'flops_per_token':
            return f'{v / 1e6:.3f}M'
        if key in ('tokens_seen',):
            return f'{v:,}'
        if key == 'tokens_per_s':
            return f'{v:,.0f}'
        if key == 'val_loss':
            return f'{v:.4f}' + (f' ± {m["val_loss_std"]:.4f}' if n > 1 else '')
        if isinstance(v, float):
            return f'{v:.4f}'
        return str(v)

    lines = ['| | baseline | Steps |', '|---|---|---|']
    for label, key in rows:
        lines.append(f'| {label} | {fmt(key, r["baseline"])} | {fmt(key, r["steps"])} |')
    return '\n'.join(lines) + '\n'


def _report(r: Dict[str, Any]) -> str:
    n = len(r['seeds'])
    d = r['delta_val_loss']
    verdict = 'lower' if d < 0 else 'higher'
    spread = f' (std of the per-seed difference {r["delta_val_loss_std"]:.4f} over {n} seeds)' if n > 1 else \
        ' (one seed: no spread; run more seeds before drawing conclusions)'
    capped = [f'{r[role]["name"]} (seed {p["seed"]})' for role in ('baseline', 'steps')
              for p in r[role]['per_seed'] if p['stopped_by_time']]
    note = ''
    if capped:
        note = (f'Note: {", ".join(capped)} reached the time cap before the planned {r["iters"]} steps (the machine '
                'was slower than when the step time was measured), so the models did not see the same number of '
                'tokens; compare them with `--lm-iters` for equal tokens regardless of speed.\n')
    return '\n'.join([
        '# Residual LM vs Steps LM',
        '',
        f'Data: `{r["data"]["dir"]}` ({r["data"]["source"]}, tokenizer {r["data"]["tokenizer"]["kind"]}, '
        f'vocabulary {r["data"]["tokenizer"]["vocab_size"]}; uniform loss {r["uniform_loss"]:.3f}). '
        f'Both models: {r["iters"]} steps on the same batches, '
        + (f'budget {r["minutes_per_model"]} min per model, ' if r['minutes_per_model'] else 'a fixed step count, ')
        + f'seeds {r["seeds"]}, device {r["device"]} ({r["threads"]} threads), torch {r["torch"]}.',
        '',
        _table(r),
        f'The Steps model ends with a validation loss {abs(d):.4f} {verdict} than the baseline{spread}. '
        'Validation loss is the mean over fixed, non-overlapping windows of the validation split (the same windows '
        'for both models). FLOPs are multiply-adds of one forward pass per token, attention included.',
        '',
        note,
        '![validation loss](loss_curves.png)',
        '',
    ])


def _plot(runs: Dict[str, List[Dict[str, Any]]], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {'baseline': 'tab:blue', 'steps': 'tab:red'}
    for role, rs in runs.items():
        for i, r in enumerate(rs):
            tr = [(h['tokens'], h['train_loss']) for h in r['history'] if 'train_loss' in h]
            va = [(h['tokens'], h['val_loss']) for h in r['history'] if 'val_loss' in h]
            label = r['model'] if i == 0 else None
            if tr:
                ax.plot(*zip(*tr), color=colours[role], alpha=0.25, lw=0.8)
            if va:
                ax.plot(*zip(*va), color=colours[role], marker='o', ms=3, lw=1.5, label=label)
    ax.set_xlabel('tokens')
    ax.set_ylabel('loss (nats/token)')
    ax.set_title('training (thin) and validation (dots) loss')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# ``stepsnet compare --task lm`` (see stepsnet.tasks.COMPARE_TASKS)


def compare_add_arguments(parser) -> None:
    """Add the language-modelling options to the ``compare`` parser."""
    g = parser.add_argument_group('language modelling (--task lm)')
    g.add_argument('--lm-baseline', default='gpt_cpu', help='named residual LM (default gpt_cpu)')
    g.add_argument('--lm-steps', default='steps_gpt_cpu', help='named Steps LM (default steps_gpt_cpu)')
    g.add_argument('--lm-data', default=None,
                   help="prepared data folder (default: the config's data_dir; the embedded corpus is prepared "
                        'there when missing)')
    g.add_argument('--lm-iters', type=int, default=None,
                   help='fixed number of steps for both models instead of deriving it from --minutes')


def compare_from_args(args) -> Dict[str, Any]:
    """Run :func:`compare_lm` from parsed ``compare`` arguments."""
    cc = CompareConfig(
        out=args.out, minutes=args.minutes, seeds=tuple(args.seeds), config=args.config, baseline=args.lm_baseline,
        steps=args.lm_steps, data_dir=args.lm_data, device=args.device, max_iters=args.lm_iters,
        progress=not args.no_progress)
    return compare_lm(cc)
