"""Language modelling: train, evaluate and sample a residual Transformer LM or its Steps version.

The training loop is the shared one (:func:`stepsnet.engine.fit`); this module holds what is the language model's:
the config, the token batches, the loss, the evaluation and sampling. Read top to bottom:

* :class:`LMConfig` is one run; ``configs/lm/*.yaml`` hold its fields.
* :func:`train_lm` opens the token memmaps and checks them against the model's vocabulary and context, builds the
  model, AdamW with weight decay on matrices only (``timm.optim``), a linear warm-up then cosine learning rate per
  step (``timm.scheduler``), and trains. The batches of step ``i`` come from a generator seeded by
  ``derive_seed(seed, 'batch', i, micro-step, rank)`` (:mod:`stepsnet.utils.seeding`) and dropout is reseeded from
  ``(seed, i, rank)`` the same way, so a run resumed from a checkpoint draws
  exactly the batches (and dropout masks) the uninterrupted run would have drawn.
* :func:`evaluate_lm` scores fixed, non-overlapping validation windows (loss, perplexity, bits per byte);
  :func:`evaluate_lm_checkpoint` does so for a saved run (``stepsnet eval``).
* :func:`sample_lm` generates text from a checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from stepsnet.config.lm import DEFAULT_DATA_DIR, LMConfig, load_config
from stepsnet.data.layouts import dry_run_data_dir
from stepsnet.data.text import TokenData, prepare_text, tokenizer_from_spec
from stepsnet.engine import (
    DistEnv,
    RunError,
    RunFolder,
    Schedule,
    all_reduce_mean,
    amp_context,
    config_dict,
    distributed,
    fit,
    prepare,
    resolve_device,
)
from stepsnet.models.factory import LM_KIND, create_lm, lm_config, lm_from_checkpoint
from stepsnet.models.steps_gpt import GPT
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.names import plural
from stepsnet.utils.seeding import derive_seed

__all__ = ['LMConfig', 'load_config', 'train_lm', 'evaluate_lm', 'evaluate_lm_checkpoint', 'sample_lm', 'ensure_data',
           'DEFAULT_DATA_DIR', 'PEAK_FLOPS']

# Dense bf16/fp16 tensor-core peak FLOP/s per device, for MFU. Matched against torch.cuda.get_device_name().
PEAK_FLOPS: Dict[str, float] = {
    'H200': 989e12, 'H100': 989e12, 'A100': 312e12, 'A10': 125e12, 'L40': 181e12, 'L4': 121e12,
    'V100': 125e12, 'T4': 65e12, 'RTX 4090': 165e12, 'RTX 3090': 71e12, 'A6000': 155e12,
}


def ensure_data(data_dir: str) -> None:
    """Prepare the embedded corpus into ``data_dir`` when that is the default folder and it is missing.

    Raises:
        FileNotFoundError: Another folder without prepared data.
    """
    if os.path.isfile(os.path.join(data_dir, 'meta.json')):
        return
    if os.path.normpath(data_dir) != os.path.normpath(DEFAULT_DATA_DIR):
        raise FileNotFoundError(
            f'data folder {data_dir!r} has no meta.json; prepare it with `stepsnet data prepare-text --out {data_dir}`')
    print(f'preparing the embedded corpus (Python standard library, byte-level) into {data_dir} ...', flush=True)
    prepare_text(data_dir)


# ----------------------------------------------------------------------------------------------------------------
# Batches and evaluation




def _train_batches(data: TokenData, cfg: LMConfig, block: int, start: int, env: DistEnv) -> Iterator[List]:
    """The micro-batches of steps ``start, start + 1, ...``; each step's draws depend only on its index."""
    it = start
    while True:
        torch.manual_seed(derive_seed(cfg.seed, 'dropout', it, env.rank))  # dropout draws depend only on the step
        micro = []
        for m in range(cfg.grad_accum):
            g = torch.Generator().manual_seed(derive_seed(cfg.seed, 'batch', it, m, env.rank))
            x, y = data.get_batch('train', cfg.batch_size, block, g)
            micro.append((x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)))
        yield micro
        it += 1


def _lm_loss(model: torch.nn.Module, batch: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return model(*batch)[1]


@torch.no_grad()
def _estimate_val_loss(model: GPT, data: TokenData, cfg: LMConfig, block: int, env: DistEnv, autocast,
                       eval_iters: int) -> float:
    """Mean validation loss over ``eval_iters`` fixed batches (the same batches at every evaluation)."""
    model.eval()
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 'val', env.rank))
    losses = torch.zeros(eval_iters)
    for k in range(eval_iters):
        x, y = data.get_batch('val', cfg.batch_size, block, g)
        with autocast():
            losses[k] = model(x.to(env.device), y.to(env.device))[1].float().item()
    model.train()
    return float(all_reduce_mean(losses.mean()).item())


@torch.no_grad()
def evaluate_lm(
        model: GPT,
        data: TokenData,
        split: str = 'val',
        block_size: Optional[int] = None,
        max_windows: int = 1024,
        batch_size: int = 32,
        device: str = 'cpu',
        autocast=None,
) -> Dict[str, float]:
    """Loss, perplexity and bits per byte over non-overlapping windows spread evenly over a split.

    The windows are fixed by the split's length, ``block_size`` and ``max_windows``, so two models scored with
    the same arguments see exactly the same tokens. Bits per byte use the split's bytes per token from the
    metadata (exact for byte-level data).
    """
    if split not in data.splits:
        raise ValueError(f'split {split!r} is not in {data.root!r}; expected one of {sorted(data.splits)}')
    if max_windows < 1:
        raise ValueError(f'max_windows must be >= 1, got {max_windows}')
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
        with (autocast or contextlib.nullcontext)():
            _, loss = model(t[:, :-1], t[:, 1:])
        loss_sum += loss.float().item() * t.size(0) * block
        count += t.size(0) * block
    model.train(was_training)
    loss = loss_sum / count
    tokens = data.meta.get('tokens', {}).get(split)
    nbytes = data.meta.get('bytes', {}).get(split)
    bpb = loss / math.log(2) * (tokens / nbytes) if tokens and nbytes else float('nan')
    return {'loss': loss, 'ppl': math.exp(min(loss, 50.0)), 'bpb': bpb, 'tokens': count}


def evaluate_lm_checkpoint(
        checkpoint: str,
        data_dir: Optional[str] = None,
        split: str = 'val',
        windows: Optional[int] = None,
        batch_size: Optional[int] = None,
        device: str = 'auto',
        amp: Optional[bool] = None,
        out: Optional[str] = None,
) -> Dict[str, Any]:
    """Loss, perplexity and bits per byte of a :func:`train_lm` checkpoint (:func:`evaluate_lm`), by default as the
    run's final evaluation scored them: its data, its context, its number of windows and its batch size.

    Args:
        checkpoint: ``last.pth`` / ``best.pth`` of a run.
        data_dir: Prepared token data (default: the run's); its tokenizer must be the run's.
        split: ``val``, ``test`` or ``train``.
        windows: Non-overlapping windows scored (default: the run's ``final_eval_windows``, or 1024).
        batch_size: Windows per forward pass (default: the run's).
        device: ``auto``, ``cpu``, ``cuda``.
        amp: Autocast as the run did (None: the run's setting).
        out: Write the result as JSON here.

    Returns:
        ``loss``, ``ppl``, ``bpb``, ``tokens`` (as :func:`evaluate_lm`) with ``model``, ``checkpoint``, ``data_dir``,
        ``split``, ``block_size`` and ``windows``.

    Raises:
        FileNotFoundError, CheckpointError: A missing or foreign checkpoint, missing data.
        ValueError: Data of another tokenizer or with ids beyond the model's vocabulary, a split too short, bad
            arguments.
    """
    for name, value in (('windows', windows), ('batch_size', batch_size)):
        if value is not None and value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')
    device = resolve_device(device)
    model, info = lm_from_checkpoint(checkpoint, device)
    cfg = info['config']
    data_dir = data_dir or info.get('data_dir') or cfg.get('data_dir')
    if not data_dir:
        raise ValueError(f'checkpoint {checkpoint!r} does not name its data; give the data folder (--data-dir)')
    data = TokenData.open(data_dir, model.config.vocab_size)
    if info.get('tokenizer') is not None and data.meta.get('tokenizer') != info['tokenizer']:
        raise ValueError(f'{data_dir!r} uses tokenizer {data.meta.get("tokenizer")}, but {checkpoint!r} was trained '
                         f'with {info["tokenizer"]}; evaluate it on data prepared with its tokenizer')
    block = int(cfg.get('block_size') or model.config.block_size)
    windows = windows or int(cfg.get('final_eval_windows') or 1024)
    autocast, _ = amp_context(bool(cfg.get('amp', False)) if amp is None else amp,
                              cfg.get('amp_dtype', 'bfloat16'), device)
    result = evaluate_lm(model, data, split, block, windows, batch_size or int(cfg.get('batch_size') or 32), device,
                         autocast)
    result = dict(result, model=info.get('model_name'), checkpoint=checkpoint, data_dir=data_dir, split=split,
                  block_size=block, windows=windows)
    if out:
        atomic_write_text(out, json.dumps(result, indent=2))
    return result


def _peak_flops(cfg: LMConfig, device: str) -> Optional[float]:
    if cfg.peak_flops:
        return float(cfg.peak_flops)
    if device.startswith('cuda'):
        name = torch.cuda.get_device_name(torch.device(device))
        return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None


# ----------------------------------------------------------------------------------------------------------------
# Training


def train_lm(cfg: LMConfig) -> Dict[str, Any]:
    """Train a language model; returns a summary (losses, tokens, throughput, paths).

    Raises:
        FileNotFoundError: Missing data folder or files.
        ValueError: Bad data (ids not below the vocabulary, too short), a context longer than the model's, a run
            folder that holds a run without ``resume``, a resume with other settings.
        FloatingPointError: More than ``nan_tolerance`` non-finite losses (the last checkpoint is left intact).
    """
    data = TokenData.open(dry_run_data_dir('lm', cfg))
    model_args = {'vocab_size': data.vocab_size, **cfg.model_kwargs}
    mcfg = lm_config(cfg.model, **model_args)
    data.check_vocab(mcfg.vocab_size)
    block = cfg.block_size or mcfg.block_size
    if block > mcfg.block_size:
        raise ValueError(f'training context block_size={block} is longer than the model {cfg.model!r} context '
                         f'{mcfg.block_size}; expected at most {mcfg.block_size}')
    data.check_context(block, 'train')
    data.check_context(block, 'val')
    meta = dict(model_name=cfg.model, model_args=mcfg.to_dict(), tokenizer=data.meta['tokenizer'],
                tokenizer_json=data.tokenizer_json() or '', data_dir=cfg.data_dir)
    with distributed(cfg.device, cfg.threads) as env, \
            RunFolder.of(cfg, LM_KIND, env) as run:
        stored = run.open(config_dict(cfg), LMConfig.MUTABLE, meta)
        if stored is not None and stored['meta'].get('tokenizer') != meta['tokenizer']:
            raise RunError(f'{run.resumed_from!r} was trained with tokenizer {stored["meta"]["tokenizer"]}, but '
                           f'{cfg.data_dir!r} uses {meta["tokenizer"]}; resume with the data it was trained on')
        del stored
        torch.manual_seed(cfg.seed)
        model = create_lm(cfg.model, **model_args)
        model.set_fused_attn(cfg.fused_attn)
        optimizer = create_optimizer_v2(model, opt='adamw', lr=cfg.lr, weight_decay=cfg.weight_decay,
                                        betas=tuple(cfg.opt_betas), **({'fused': True} if 'cuda' in env.device
                                                                         else {}))
        warmup = cfg.warmup_iters
        scheduler, _ = create_scheduler_v2(
            optimizer, 'cosine', num_epochs=max(1, cfg.max_iters - warmup), warmup_epochs=warmup,
            warmup_lr=cfg.lr / (warmup + 1), warmup_prefix=True, min_lr=cfg.lr / 10 if cfg.min_lr is None
            else cfg.min_lr, step_on_epochs=False, updates_per_epoch=1)
        state = prepare(model, optimizer, scheduler, run, cfg)
        progress = state.progress
        tokens_per_step = cfg.batch_size * block * cfg.grad_accum * env.world_size
        run.describe(f'{cfg.model}: {model.num_params() / 1e6:.3f}M params ({model.plan}), '
                     f'{plural(env.world_size, "process", "processes")} on {env.device}, {tokens_per_step:,} tokens '
                     f'per step, lr {cfg.lr:g}',
                     model=mcfg.to_dict(), params=model.num_params(), plan=str(model.plan),
                     world_size=env.world_size, device=env.device, torch=torch.__version__)
        schedule = Schedule(
            total_steps=cfg.max_iters, eval_every=cfg.eval_interval,
            checkpoint_every=cfg.checkpoint_interval or cfg.eval_interval, log_every=cfg.log_interval,
            metric='loss', higher_is_better=False, clip_grad=cfg.clip_grad, nan_tolerance=cfg.nan_tolerance,
            time_limit=cfg.time_limit, progress=cfg.progress, desc=cfg.model, item_name='tokens',
            eval_batches=cfg.eval_iters)
        eval_iters = 1 if cfg.dry_run else cfg.eval_iters  # a dry run evaluates one batch
        start_step, start_time = progress.step, progress.train_time
        fit(state, run=run, batches=_train_batches(data, cfg, block, progress.step, env), loss_fn=_lm_loss,
            evaluate=lambda: {'loss': _estimate_val_loss(model, data, cfg, block, env, state.autocast, eval_iters)},
            schedule=schedule, count=lambda micro: sum(x.numel() for x, _ in micro),
            eval_line=lambda step, m: f'step {step}/{cfg.max_iters}  val loss {m["loss"]:.4f}')

        windows = 0 if cfg.dry_run else cfg.final_eval_windows
        final: Dict[str, float] = run.stored_results().get('final', {}) if windows > 0 else {}
        if windows > 0 and env.is_main and (run.trained or not final):
            final = evaluate_lm(model, data, 'val', block, cfg.final_eval_windows, cfg.batch_size, env.device,
                                state.autocast)
            if run.trained:
                print(f'final: val loss {final["loss"]:.4f}  ppl {final["ppl"]:.3f}  bits/byte {final["bpb"]:.4f} '
                      f'over {final["tokens"]:,} tokens', flush=True)
        trained = progress.train_time - start_time
        tps = (progress.step - start_step) * tokens_per_step / trained if trained > 0 else float('nan')
        peak = _peak_flops(cfg, env.device)
        flops = model.flops_per_token(block)
        vals = [h['val_loss'] for h in progress.history if 'val_loss' in h]
        summary = {
            'model': cfg.model, 'params': model.num_params(), 'plan': str(model.plan), 'blocks': model.num_blocks,
            'iters': progress.step, 'tokens_seen': progress.step * tokens_per_step, 'train_time_s': progress.train_time,
            'tokens_per_s': tps, 'mfu': tps * flops['train_flops'] / (peak * env.world_size) if peak else None,
            'flops_per_token': flops['forward_macs'], 'last_val_loss': vals[-1] if vals else None,
            'final': final, 'stopped_by_time': progress.step < cfg.max_iters, 'checkpoint': run.last,
            'out_dir': cfg.out_dir, 'world_size': env.world_size, 'history': progress.history,
        }
        summary['results'] = run.results(state, schedule, final or progress.last_eval('loss'), model=cfg.model,
                                         params=model.num_params())
        run.finish(summary['results'])
        return summary


# ----------------------------------------------------------------------------------------------------------------
# Sampling


def sample_lm(
        checkpoint: str,
        prompt: str = '\n',
        max_new_tokens: int = 200,
        num_samples: int = 1,
        temperature: float = 0.8,
        top_k: Optional[int] = 50,
        seed: int = 0,
        device: str = 'cpu',
) -> List[str]:
    """Generate ``num_samples`` continuations of ``prompt`` (the prompt included) from a checkpoint.

    Raises:
        ValueError: Non-positive ``max_new_tokens`` / ``num_samples`` / ``top_k``, negative ``temperature``, a
            prompt that encodes to nothing, or an unavailable device.
    """
    for name, value in (('max_new_tokens', max_new_tokens), ('num_samples', num_samples)):
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')
    if top_k is not None and top_k < 1:
        raise ValueError(f'top_k must be >= 1 (or None for no top-k), got {top_k}')
    if temperature < 0:
        raise ValueError(f'temperature must be >= 0, got {temperature}')
    device = resolve_device(device)
    model, info = lm_from_checkpoint(checkpoint, device)
    tok = tokenizer_from_spec(info['tokenizer'], info.get('tokenizer_json') or None)
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError('the prompt encodes to no tokens; expected at least one character')
    x = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, generator=g)
    return [tok.decode(row.tolist()) for row in out]
