"""Throughput and peak memory of baseline / Steps model pairs, measured the same way for both.

How a pair is measured (``benchmark_pair``, ``benchmark_pairs``):

* both models are built in the same process, on the same device, dtype and memory format, from random weights;
  image classifiers (``task='cls'``) get a random image batch, language models (``task='lm'``) random token ids;
* with ``compile`` a model is wrapped by ``torch.compile`` (inductor by default) exactly as the training engine
  does; ``benchmark_pairs`` can measure the eager and the compiled version of both models in the same round, so
  eager and compiled ratios come from one machine state;
* each model gets ``warmup`` untimed iterations (their wall time is reported as ``warmup_s``: for a compiled model
  it is dominated by compilation), then ``runs`` timed runs of ``iters`` iterations each, the models *alternating*
  run by run (A B, B A, A B, ...; with four models A B C D, D C B A, ...), so slow drifts of the machine (thermal,
  other jobs) hit all of them;
* throughput is images (or tokens) per second of a run; a model's figure is the median over its runs, and the
  pair's ratio is the median of the per-round ratios ``steps / baseline`` (robust to a noisy round);
* training iterations are forward + loss + backward + optimizer step: cross-entropy and SGD for classifiers (as
  timm's ``benchmark.py``), the model's own next-token loss and AdamW for language models (as ``train_lm``);
* peak memory is measured in a separate, untimed pass: the peak of the bytes allocated during one iteration on
  top of what was allocated before (the resident model, its gradients and optimizer state between steps): on
  CUDA from the caching allocator, on a CPU from the profiler's record of every allocation and free (exact for
  tensors; without that record, the growth of the peak resident set, ``VmHWM``, approximately);
* a cell (pair, batch size, mode) that runs out of memory, or that would start after the time budget, is recorded
  with an ``<mode>_error`` instead of numbers, and the others go on.

Rows use timm's ``benchmark.py`` column names (``infer_samples_per_sec``, ``infer_step_time`` in ms,
``infer_batch_size``, ``infer_img_size``, ``param_count`` in millions, ``train_*``; a language model has
``*_tokens_per_sec`` and ``*_seq_len`` instead) plus the device, dtype, memory format, compilation, library
versions and the ratios.
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import gc
import inspect
import io
import os
import platform
import re
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

import stepsnet
from stepsnet.models.factory import create_classifier, create_lm
from stepsnet.steps import Steps, set_step_checkpointing
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.figures import pyplot, save_figure
from stepsnet.utils.logging import interactive
from stepsnet.utils.names import plural

__all__ = ['MODEL_KINDS', 'parse_pair', 'check_pair', 'benchmark_pair', 'benchmark_pairs', 'format_ratios', 'write_csv',
           'read_csv', 'plot_ratios', 'environment', 'format_profile', 'peak_memory_mb']

# the kinds of model pair measured: image classifiers, language models
MODEL_KINDS = ('cls', 'lm')
# per task: throughput column, input-size column, unit
_UNITS = {'cls': ('samples_per_sec', 'img_size', 'img/s'), 'lm': ('tokens_per_sec', 'seq_len', 'tok/s')}
_EAGER = 'none'


def parse_pair(text: str) -> Tuple[str, str]:
    """``'resnet50,steps_resnet50'`` -> ``('resnet50', 'steps_resnet50')`` (baseline first)."""
    parts = [p.strip() for p in text.split(',')]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f'a pair is BASELINE,STEPS (two model names separated by a comma), got {text!r}')
    return parts[0], parts[1]


def _check_task(task: str) -> None:
    if task not in MODEL_KINDS:
        raise ValueError(f'task must be one of {MODEL_KINDS}, got {task!r}')


def _create(task: str, name: str, num_classes: int, img_size: Optional[int],
            model_kwargs: Optional[Mapping[str, Any]]) -> nn.Module:
    kwargs = dict(model_kwargs or {})
    if task == 'lm':
        return create_lm(name, **kwargs)
    return create_classifier(name, num_classes, img_size, **kwargs)


def check_pair(
        baseline: str,
        steps: str,
        tolerance: float = 0.05,
        task: str = 'cls',
        model_kwargs: Optional[Mapping[str, Any]] = None,
) -> None:
    """Refuse a pair whose ratio would mean nothing: the Steps model second, the two of about the same size.

    Both are built on the meta device (no memory, no compute), with ``model_kwargs`` when given.

    Raises:
        ValueError: The second model has no Steps module or the first has one (a swapped pair), or their
            parameter counts differ by more than ``tolerance`` (models of different sizes).
    """
    _check_task(task)
    with torch.device('meta'):
        models = {n: _create(task, n, 1000, None, model_kwargs) for n in (baseline, steps)}
    has = {n: any(isinstance(m, Steps) and m.plan.num_steps > 1 for m in net.modules()) for n, net in models.items()}
    if has[baseline] and not has[steps]:
        raise ValueError(f'pair {baseline},{steps} is swapped: {baseline!r} is the Steps model; expected '
                         f'BASELINE,STEPS, i.e. --pair {steps},{baseline}')
    if not has[steps]:
        raise ValueError(f'{steps!r} has no Steps trunk of more than one step; expected BASELINE,STEPS with a Steps '
                         'model second')
    params = {n: sum(p.numel() for p in net.parameters()) for n, net in models.items()}
    rel = params[steps] / params[baseline] - 1
    if abs(rel) > tolerance:
        raise ValueError(f'{steps!r} has {params[steps] / 1e6:.2f}M parameters and {baseline!r} '
                         f'{params[baseline] / 1e6:.2f}M ({100 * rel:+.0f}%): not a pair of twins; expected a Steps '
                         f'model and its baseline (parameters within {100 * tolerance:.0f}%)')


def environment(device: str) -> Dict[str, str]:
    """Library versions and the device, for the CSV."""
    if device.startswith('cuda') and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f'{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads, ' \
               f'{os.cpu_count()} cpus)'
    return dict(device=device, device_name=name, torch=torch.__version__, timm=timm.__version__,
                stepsnet=stepsnet.__version__, python=platform.python_version())


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class _Runner:
    """One model ready to run inference or training iterations on a fixed random batch.

    Args:
        compile: None (eager) or a ``torch.compile`` backend name (``'inductor'``); see :meth:`compile_model`.
        checkpoint_steps: Activation checkpointing of the first this many steps of every Steps trunk (training).
    """

    def __init__(self, name: str, mode: str, batch_size: int, img_size: Optional[int], device: str, dtype: str,
                 channels_last: bool, num_classes: int, task: str = 'cls',
                 model_kwargs: Optional[Mapping[str, Any]] = None, compile: Optional[str] = None,
                 checkpoint_steps: int = 0):
        self.name, self.mode, self.device, self.task = name, mode, device, task
        self.compile = compile or _EAGER
        model = _create(task, name, num_classes, img_size, model_kwargs).to(device)
        if checkpoint_steps:
            set_step_checkpointing(model, checkpoint_steps)
        self.params = sum(p.numel() for p in model.parameters())
        if task == 'lm':
            seq_len = img_size or model.config.block_size
            self.x = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device=device)
            self.y = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device=device)
            self.samples = batch_size * seq_len
            self.size = seq_len
        else:
            mf = torch.channels_last if channels_last else torch.contiguous_format
            model.to(memory_format=mf)
            self.x = torch.randn(batch_size, 3, img_size, img_size, device=device).contiguous(memory_format=mf)
            self.y = torch.randint(0, num_classes, (batch_size,), device=device)
            self.samples = batch_size
            self.size = img_size
            self.loss = nn.CrossEntropyLoss()
        self.autocast = dtype != 'float32'
        self.dtype = getattr(torch, dtype)
        if mode == 'train':
            model.train()
            if task == 'lm':
                self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
            else:
                self.opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        else:
            model.eval()
        self.model = model
        self.fn: Callable[..., Any] = model
        self.warmup_s = 0.0

    def compile_model(self, scope: str = 'model', block_types: Tuple[type, ...] = ()) -> None:
        """``torch.compile`` the model with this runner's backend (nothing when it runs eager).

        ``scope='model'`` compiles the whole module, as the training engine does (``wrap_model(compile=True)``),
        not the step. ``scope='blocks'`` compiles each module of ``block_types`` (the residual blocks) in place and
        runs the rest eagerly: regional compilation, where blocks of the same class and width share one compiled
        graph, so a deep model compiles in a fraction of the time, but nothing fuses across block boundaries.
        """
        if self.compile == _EAGER:
            return
        if scope == 'model':
            self.fn = torch.compile(self.model, backend=self.compile, dynamic=False)
            return
        for m in self.model.modules():
            if isinstance(m, block_types):
                m.compile(backend=self.compile, dynamic=False)

    def _ctx(self):
        dev = torch.device(self.device).type
        return torch.autocast(dev, dtype=self.dtype, enabled=self.autocast)

    def _forward(self) -> torch.Tensor:
        """The training loss (language models compute it in their forward; inference runs it too)."""
        if self.task == 'lm':
            return self.fn(self.x, self.y)[1]
        out = self.fn(self.x)
        return self.loss(out, self.y) if self.mode == 'train' else out

    def step(self) -> None:
        if self.mode == 'train':
            self.opt.zero_grad(set_to_none=True)
            with self._ctx():
                loss = self._forward()
            loss.backward()
            self.opt.step()
        else:
            with torch.inference_mode(), self._ctx():
                self._forward()

    def warm_up(self, iters: int) -> None:
        """Run ``iters`` untimed iterations (compilation happens in the first); their wall time is ``warmup_s``."""
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(iters):
            self.step()
        _sync(self.device)
        self.warmup_s = time.perf_counter() - t0

    def timed(self, iters: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Samples (images or tokens) per second over ``iters`` iterations, timed with ``clock``."""
        _sync(self.device)
        t0 = clock()
        for _ in range(iters):
            self.step()
        _sync(self.device)
        return iters * self.samples / (clock() - t0)

    def free(self) -> None:
        for attr in ('fn', 'model', 'x', 'y', 'opt'):
            if hasattr(self, attr):
                delattr(self, attr)


def _read_status_kb(key: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _libc() -> Optional[Any]:
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: large blocks are mmapped and unmapped on free
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD: give the heap top back early
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def _quiet_profiler():
    """torch.profiler without Kineto's own log lines on stderr, for the time of the call.

    Kineto (the profiler's library) prints a ``USDT ... profiler_start`` / ``profiler_stop`` pair for every profiled
    call and, on a CUDA build of torch on a machine without a GPU, ``ERROR ... gpuGetDeviceCount failed``: the
    benchmark's memory pass profiles every model twice, so a CPU-only run printed about 18 such lines that no one
    asked for. Kineto reads ``KINETO_LOG_LEVEL`` once, when the first profile starts: above its highest level (5)
    nothing is printed. A level the user set is kept (they are debugging the profiler).
    """
    if 'KINETO_LOG_LEVEL' in os.environ:
        yield
        return
    os.environ['KINETO_LOG_LEVEL'] = '6'
    try:
        yield
    finally:
        os.environ.pop('KINETO_LOG_LEVEL', None)


def _peak_allocated_cpu(step: Callable[[], None]) -> Optional[float]:
    """Peak of the bytes allocated through PyTorch's CPU allocator during ``step``, above the start (MiB).

    The profiler records every allocation and free with its time; their running sum over the step peaks at the
    memory the step needs on top of what was allocated before. The step runs twice: blocks allocated before the
    first profiled call (e.g. gradients of an earlier step) are freed without a recorded size, so only the second
    call counts.
    """
    from torch.profiler import ProfilerActivity, profile
    best = 0
    for _ in range(2):
        with _quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        results = getattr(prof.profiler, 'kineto_results', None)
        if results is None:
            return None
        events = sorted((e.start_ns(), e.nbytes()) for e in results.events() if e.name() == '[memory]')
        current = best = 0
        for _, nbytes in events:
            current += nbytes
            best = max(best, current)
    return best / 2 ** 20


def peak_memory_mb(step: Callable[[], None], device: str) -> Optional[float]:
    """Memory one call of ``step`` needs on top of what is already allocated (MiB), or None if unmeasurable.

    CUDA: the peak of the caching allocator's allocated bytes. CPU: the peak of the bytes allocated through
    PyTorch's allocator, from the profiler's allocation records (tensors only: exact and independent of the C
    library's heap); where those are not available, the growth of the peak resident set (``VmHWM``) on Linux.
    """
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    if device.startswith('cpu'):
        peak = _peak_allocated_cpu(step)
        if peak is not None:
            return peak
    libc = _libc()
    if libc is None or _read_status_kb('VmHWM') is None:
        return None
    gc.collect()
    libc.malloc_trim(0)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current resident set
    except OSError:
        return None
    before = _read_status_kb('VmRSS')
    step()
    peak = _read_status_kb('VmHWM')
    return max(0.0, (peak - before) / 1024.0)


def _is_oom(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, RuntimeError) and ('out of memory' in text or "can't allocate memory" in text)


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith('cuda'):
        torch.cuda.empty_cache()


# Operator families of a profile, first match wins (compiled kernels are named cpp_fused_* / triton_*).
_OP_GROUPS = (
    ('attention', r'attention|sdpa|flash|efficient_attention'),
    ('matmul / conv', r'\b(mm|addmm|bmm|baddbmm|matmul|linear|conv|convolution|_convolution|mkldnn_convolution)'
                      r'\b|convolution_backward|_linear|gemm|matmul'),
    ('compiled kernels (fused)', r'cpp_fused|triton_|cpp_kernel|kernel_cpp|fused_'),
    ('normalisation', r'norm'),
    ('activation', r'gelu|relu|silu|softmax|tanh|sigmoid|threshold_backward'),
    ('concat / copy / layout', r'\bcat\b|copy|clone|contiguous|permute|transpose|reshape|view|_to_copy|split|'
                               r'narrow|slice|select|unbind|expand|as_strided|stack|index'),
    ('optimizer', r'optim|_foreach|sgd|adam|lerp|addcdiv|addcmul'),
    ('elementwise', r'\b(add|add_|mul|mul_|div|sub|neg|sum|mean|where|fill_|zero_|zeros|empty|ones|pow|sqrt|rsqrt'
                    r'|exp|log|masked_fill|embedding|nll_loss|log_softmax|cross_entropy)'),
)


def _op_group(name: str) -> str:
    low = name.lower()
    for group, pattern in _OP_GROUPS:
        if re.search(pattern, low):
            return group
    return 'other'


def _profile(runner: _Runner, iters: int) -> Dict[str, Any]:
    """Self time (ms per iteration) of every operator of ``iters`` iterations of ``runner``."""
    from torch.profiler import ProfilerActivity, profile
    cuda = runner.device.startswith('cuda') and torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(runner.device)
    with _quiet_profiler(), profile(activities=activities) as prof:
        for _ in range(iters):
            runner.step()
        _sync(runner.device)
    ops = []
    for e in prof.key_averages():
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        if us > 0:
            ops.append((e.key, us / 1000.0 / iters, e.count // iters))
    ops.sort(key=lambda t: -t[1])
    return dict(model=runner.name, compile=runner.compile, mode=runner.mode, ops=ops,
                total_ms=sum(t[1] for t in ops), clock='device' if cuda else 'cpu')


def format_profile(profiles: Sequence[Dict[str, Any]], top: int = 25) -> str:
    """Markdown: per pair of profiles (baseline, Steps) the time by operator family, then the top operators.

    ``profiles`` alternates baseline and Steps entries of one mode and compilation (as ``benchmark_pairs`` returns
    them under ``profile=True``). The profiler times operators with the wall clock, which on a shared machine also
    counts the time the process waited for a core; the family table therefore gives each family's *share* of the
    profiled time and that share of the step time the benchmark measured (``step_ms``, with its own clock).
    """
    lines: List[str] = []
    for base, steps in zip(profiles[0::2], profiles[1::2]):
        lines += [f'### {base["mode"]}, compile={base["compile"]}: {base["model"]} vs {steps["model"]}', '',
                  f'Operator families: share of the profiled self {base["clock"]} time, and that share of the '
                  'measured step time (ms per iteration):', '',
                  '| family | baseline % | steps % | baseline ms | steps ms | steps - baseline ms |',
                  '|---|---|---|---|---|---|']
        groups: Dict[str, List[float]] = {}
        for i, p in enumerate((base, steps)):
            for name, ms, _ in p['ops']:
                groups.setdefault(_op_group(name), [0.0, 0.0])[i] += ms / max(p['total_ms'], 1e-9)
        sa, sb = base.get('step_ms') or base['total_ms'], steps.get('step_ms') or steps['total_ms']
        for g, (a, b) in sorted(groups.items(), key=lambda kv: -abs(kv[1][1] * sb - kv[1][0] * sa)):
            lines.append(f'| {g} | {100 * a:.1f} | {100 * b:.1f} | {a * sa:.1f} | {b * sb:.1f} | '
                         f'{b * sb - a * sa:+.1f} |')
        lines += [f'| **total** | 100 | 100 | **{sa:.1f}** | **{sb:.1f}** | **{sb - sa:+.1f}** |', '']
        for p in (base, steps):
            lines += [f'Top operators of {p["model"]} (self ms per iteration, calls per iteration):', '',
                      '| operator | ms | % | calls |', '|---|---|---|---|']
            for name, ms, n in p['ops'][:top]:
                lines.append(f'| `{name[:90]}` | {ms:.2f} | {100 * ms / max(p["total_ms"], 1e-9):.1f} | {n} |')
            lines.append('')
    return '\n'.join(lines) + '\n'


def clock_fn(clock: str, device: str) -> Callable[[], float]:
    """The timer of ``clock``: ``wall`` (``time.perf_counter``) or ``process`` (CPU time; CPU devices only)."""
    if clock not in ('wall', 'process'):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    if clock == 'process' and not device.startswith('cpu'):
        raise ValueError(f"clock='process' measures CPU time and only applies to device cpu, got {device!r}")
    return time.process_time if clock == 'process' else time.perf_counter


def _check_args(mode: str, runs: int, iters: int, warmup: int, dtype: str, clock: str, device: str, task: str,
                channels_last: bool, compiled: bool) -> None:
    if mode not in ('infer', 'train'):
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    if runs < 1 or iters < 1 or warmup < 0:
        raise ValueError(f'need runs >= 1, iters >= 1, warmup >= 0; got runs={runs}, iters={iters}, warmup={warmup}')
    if compiled and warmup < 1:
        raise ValueError('a compiled model needs warmup >= 1 (its first iteration compiles), got warmup=0')
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f'dtype must be float32, bfloat16 or float16, got {dtype!r}')
    clock_fn(clock, device)
    _check_task(task)
    if task == 'lm' and channels_last:
        raise ValueError('channels_last applies to image models, not to task lm')


def _block_types(model: nn.Module) -> Tuple[type, ...]:
    """Classes of the blocks of a model's Steps trunks (of more than one step)."""
    types = {type(b) for m in model.modules() if isinstance(m, Steps) and m.plan.num_steps > 1 for b in m}
    return tuple(sorted(types, key=lambda t: t.__qualname__))


# the keyword arguments of benchmark_pairs that set how one cell is measured (benchmark_pair takes them too)
_SETTINGS = ('batch_size', 'img_size', 'device', 'dtype', 'channels_last', 'warmup', 'runs', 'iters', 'num_classes',
             'memory', 'progress', 'clock', 'task', 'model_kwargs', 'checkpoint_steps', 'compile_scope')


def _measure(
        baseline: str,
        steps: str,
        mode: str,
        variants: Sequence[Optional[str]],
        *,
        batch_size: int,
        img_size: Optional[int],
        device: str,
        dtype: str,
        channels_last: bool,
        warmup: int,
        runs: int,
        iters: int,
        num_classes: int,
        memory: bool,
        progress: bool,
        clock: str,
        task: str,
        model_kwargs: Optional[Mapping[str, Any]],
        checkpoint_steps: int,
        catch_oom: bool,
        profile: bool = False,
        compile_scope: str = 'model',
) -> Tuple[Dict[Optional[str], Dict[str, Any]], List[Dict[str, Any]]]:
    """One cell: both models in every compilation variant, warmed up, then all timed alternately.

    Returns:
        ``({variant: result}, profiles)``: a result is ``{'baseline': ..., 'steps': ..., 'ratio': ...,
        'ratio_of_medians': ...}`` or ``{'error': 'out of memory'}`` (only with ``catch_oom``); ``profiles`` has
        one entry per model (baseline, Steps, for each variant) with ``profile``, else is empty.
    """
    _check_args(mode, runs, iters, warmup, dtype, clock, device, task, channels_last, any(variants))
    if compile_scope not in ('model', 'blocks'):
        raise ValueError(f"compile_scope must be 'model' or 'blocks', got {compile_scope!r}")
    timer = clock_fn(clock, device)
    if any(variants):
        # every cell compiles from scratch: its warm-up time does not depend on what ran before, and models that
        # share a forward (a Steps model and its timm base class) do not pile up in one cache to its limit
        torch.compiler.reset()
    out: Dict[Optional[str], Dict[str, Any]] = {}
    runners: Dict[Optional[str], List[_Runner]] = {}
    for v in variants:
        built: List[_Runner] = []
        try:
            for name, ckpt in ((baseline, 0), (steps, checkpoint_steps)):
                built.append(_Runner(name, mode, batch_size, img_size, device, dtype, channels_last, num_classes,
                                     task, model_kwargs, v, ckpt))
            # regional compilation compiles the same block classes in both models: those of the Steps trunks
            types = _block_types(built[1].model) if v and compile_scope == 'blocks' else ()
            if v and compile_scope == 'blocks' and not types:
                raise ValueError(f"compile_scope='blocks' compiles the blocks of the Steps trunks, but {steps!r} has "
                                 'none; expected a Steps model second')
            for r in built:
                r.compile_model(compile_scope, types)
                r.warm_up(warmup)
        except RuntimeError as e:
            if not (catch_oom and _is_oom(e)):
                raise
            for r in built:
                r.free()
            del built
            _free_memory(device)
            out[v] = dict(error='out of memory')
            continue
        runners[v] = built
    order = [r for v in variants if v in runners for r in runners[v]]
    speeds: Dict[int, List[float]] = {id(r): [] for r in order}
    desc = f'{mode} {baseline} vs {steps}'
    for k in tqdm(range(runs), desc=desc, disable=not interactive(progress), leave=False):
        for r in (order if k % 2 == 0 else order[::-1]):
            speeds[id(r)].append(r.timed(iters, timer))
    profiles = [_profile(r, iters) for r in order] if profile else []
    for p, r in zip(profiles, order):
        p['step_ms'] = 1000.0 * r.samples / statistics.median(speeds[id(r)])
    for v, (rb, rs) in runners.items():
        res: Dict[str, Any] = {}
        for role, r in (('baseline', rb), ('steps', rs)):
            s = speeds[id(r)]
            med = statistics.median(s)
            res[role] = dict(model=r.name, samples_per_sec=med, step_time=1000.0 * r.samples / med, runs=s,
                             peak_mem_mb=None, param_count=r.params, warmup_s=r.warmup_s, size=r.size)
        res['ratio'] = statistics.median(b / a for a, b in zip(speeds[id(rb)], speeds[id(rs)]))
        res['ratio_of_medians'] = res['steps']['samples_per_sec'] / res['baseline']['samples_per_sec']
        out[v] = res
    if memory:  # one model at a time, after the timing (the others stay resident and untouched)
        for v, (rb, rs) in runners.items():
            for role, r in (('baseline', rb), ('steps', rs)):
                out[v][role]['peak_mem_mb'] = peak_memory_mb(r.step, device)
    for rs in runners.values():
        for r in rs:
            r.free()
    _free_memory(device)
    return {v: out[v] for v in variants}, profiles


def benchmark_pair(
        baseline: str,
        steps: str,
        mode: str = 'infer',
        compile: Optional[str] = None,
        **settings: Any,
) -> Dict[str, Any]:
    """Measure one mode (``infer`` or ``train``) of a baseline / Steps pair, alternating the two models.

    ``clock='process'`` times with the CPU time of this process instead of the wall clock (CPU only): on a
    machine shared with other jobs, and with one thread, it counts only the time the model computed.

    Args:
        compile: A ``torch.compile`` backend (``'inductor'``) for both models, or None (eager).
        **settings: The settings of :func:`benchmark_pairs`, with its defaults: ``batch_size``, ``img_size``
            (image size, or context length for ``task='lm'``; None: the model's), ``device``, ``dtype``,
            ``channels_last``, ``warmup``, ``runs``, ``iters``, ``num_classes``, ``memory``, ``progress``,
            ``clock``, ``task`` (``'cls'``: timm classifiers, ``'lm'``: the language models of
            :mod:`stepsnet.models.steps_gpt`), ``model_kwargs`` (extra arguments for both models, e.g.
            ``{'n_layer': 16}``), ``checkpoint_steps`` (activation checkpointing of the first this many steps of
            the Steps model's trunks), ``compile_scope`` (``'model'``: the whole module, as the training engine;
            ``'blocks'``: each block of the Steps trunk's block classes, in both models: regional compilation,
            much faster to compile).

    Returns:
        ``{'baseline': {...}, 'steps': {...}, 'ratio': float, 'ratio_of_medians': float}``; each model entry
        has ``samples_per_sec`` (median; tokens per second for a language model), ``runs`` (every run),
        ``step_time`` (ms per iteration at the median), ``warmup_s`` (wall time of the warm-up, compilation
        included), ``peak_mem_mb`` and ``param_count``.
    """
    return _measure(baseline, steps, mode, (compile,), catch_oom=False, **_settings(settings))[0][compile]


def _settings(given: Mapping[str, Any]) -> Dict[str, Any]:
    """The measurement settings of one cell: ``given``, then :func:`benchmark_pairs`' defaults (one set of them)."""
    defaults = {k: p.default for k, p in inspect.signature(benchmark_pairs).parameters.items() if k in _SETTINGS}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f'unknown benchmark settings {unknown}; expected some of {sorted(defaults)}')
    return {**defaults, **given}


def benchmark_pairs(
        pairs: Sequence[Tuple[str, str]],
        modes: Sequence[str] = ('infer', 'train'),
        batch_size: int = 32,
        img_size: Optional[int] = 224,
        device: str = 'cpu',
        dtype: str = 'float32',
        channels_last: bool = False,
        warmup: int = 2,
        runs: int = 5,
        iters: int = 3,
        num_classes: int = 1000,
        memory: bool = True,
        progress: bool = False,
        clock: str = 'wall',
        task: str = 'cls',
        model_kwargs: Optional[Mapping[str, Any]] = None,
        compile: Sequence[Optional[str]] = (None,),
        checkpoint_steps: int = 0,
        compile_scope: str = 'model',
        batch_sizes: Optional[Sequence[int]] = None,
        deadline: Optional[float] = None,
        profiles: Optional[List[Dict[str, Any]]] = None,
        on_rows: Optional[Callable[[List[Dict[str, Any]]], None]] = None,
) -> List[Dict[str, Any]]:
    """Benchmark every pair in every mode, batch size and compilation; one CSV-ready row per model and setting.

    Each row holds ``pair`` (``baseline,steps``), ``role``, ``task``, ``compile`` (``none`` or the backend) and
    ``compile_scope``,
    ``<mode>_ratio`` (Steps / baseline throughput, 1.0 on the baseline row), ``<mode>_runs`` (every run),
    ``<mode>_warmup_s``, the peak memory, and the environment. The compilation variants of a pair, mode and batch
    size are timed in the same alternating rounds. A cell that runs out of memory gets ``<mode>_error`` and the
    others go on; a cell that would start after ``deadline`` (a :func:`time.monotonic` value), or sooner than the
    longest cell so far would take, is skipped the same way.

    Args:
        batch_sizes: Several batch sizes (overrides ``batch_size``); the outer loop, so a time budget keeps the
            first batch size of every pair.
        profiles: When a list, a per-operator profile of each model in every cell is appended to it (see
            :func:`format_profile`).
        on_rows: Called with the rows finished so far after each pair (to write them out as they come).
    """
    _check_task(task)
    env = environment(device)
    unit_rate, unit_size, _ = _UNITS[task]
    variants = list(compile)
    rows: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
    longest = 0.0
    kwargs_text = ' '.join(f'{k}={v}' for k, v in (model_kwargs or {}).items())
    for bs in (batch_sizes or [batch_size]):
        for baseline, steps in pairs:
            pair = f'{baseline},{steps}'
            for mode in modes:
                start = time.monotonic()
                if deadline is not None and start + longest > deadline:
                    cell: Dict[Any, Dict[str, Any]] = {v: dict(error='skipped (time budget)') for v in variants}
                else:
                    cell, profs = _measure(
                        baseline, steps, mode, variants, batch_size=bs, img_size=img_size, device=device,
                        dtype=dtype, channels_last=channels_last, warmup=warmup, runs=runs, iters=iters,
                        num_classes=num_classes, memory=memory, progress=progress, clock=clock, task=task,
                        model_kwargs=model_kwargs, checkpoint_steps=checkpoint_steps, catch_oom=True,
                        profile=profiles is not None, compile_scope=compile_scope)
                    longest = max(longest, time.monotonic() - start)
                    if profiles is not None:
                        profiles.extend(profs)
                if progress:
                    tqdm.write(f'{mode} {pair} batch {bs}: {_cell_line(cell, variants)} '
                               f'({time.monotonic() - start:.0f}s)')
                for v in variants:
                    res = cell[v]
                    for role, name in (('baseline', baseline), ('steps', steps)):
                        row = rows.setdefault((bs, pair, v, role), dict(
                            model=name, pair=pair, role=role, task=task, compile=v or _EAGER,
                            compile_scope=compile_scope if v else '',
                            model_kwargs=kwargs_text, checkpoint_steps=checkpoint_steps if role == 'steps' else 0))
                        row[f'{mode}_batch_size'] = bs
                        if 'error' in res:
                            row[f'{mode}_{unit_size}'] = img_size
                            row[f'{mode}_error'] = res['error']
                            continue
                        r = res[role]
                        row[f'{mode}_{unit_size}'] = r['size']
                        row[f'{mode}_{unit_rate}'] = round(r['samples_per_sec'], 2)
                        row[f'{mode}_step_time'] = round(r['step_time'], 3)
                        row[f'{mode}_peak_mem_mb'] = None if r['peak_mem_mb'] is None else round(r['peak_mem_mb'], 1)
                        row[f'{mode}_ratio'] = 1.0 if role == 'baseline' else round(res['ratio'], 4)
                        row[f'{mode}_warmup_s'] = round(r['warmup_s'], 2)
                        row[f'{mode}_runs'] = ' '.join(f'{s:.2f}' for s in r['runs'])
                        row['param_count'] = round(r['param_count'] / 1e6, 2)
            for key, row in rows.items():
                if key[1] == pair and key[0] == bs:
                    row.update(dtype=dtype, memory_format='channels_last' if channels_last else 'nchw',
                               warmup=warmup, runs=runs, iters=iters, clock=clock, **env)
            if on_rows is not None:
                on_rows(list(rows.values()))
    return list(rows.values())


def _cell_line(cell: Mapping[Any, Mapping[str, Any]], variants: Sequence[Optional[str]]) -> str:
    """The progress line's words for one cell: ``Steps / baseline 0.812`` (eager only), ``Steps / baseline 0.812
    eager, 0.934 compiled with inductor``, or what stopped a variant (``out of memory``)."""
    def value(v):
        return cell[v]['error'] if 'error' in cell[v] else f'{cell[v]["ratio"]:.3f}'
    if variants == [None]:
        return f'Steps / baseline {value(None)}'
    return 'Steps / baseline ' + ', '.join(f'{value(v)} ' + (f'compiled with {v}' if v else 'eager') for v in variants)


def _compile_label(row: Mapping[str, Any]) -> str:
    """``none``, ``inductor`` or ``inductor (blocks)``."""
    comp = row.get('compile') or _EAGER
    return f'{comp} (blocks)' if row.get('compile_scope') == 'blocks' else comp


def _rate(row: Mapping[str, Any], mode: str) -> Tuple[Optional[float], str]:
    for key, _, unit in _UNITS.values():
        if row.get(f'{mode}_{key}') is not None:
            return row[f'{mode}_{key}'], unit
    return None, ''


def format_ratios(rows: Sequence[Dict[str, Any]]) -> str:
    """A markdown table: per pair, batch size and compilation, throughput of both models, the Steps / baseline
    ratio, the warm-up (compilation) time and the peak memory per mode."""
    modes = [m for m in ('infer', 'train') if any(f'{m}_batch_size' in r for r in rows)]
    # a column no row has a value for (the memory pass with --no-memory) is left out, not filled with dashes
    memory = {m: any(r.get(f'{m}_peak_mem_mb') is not None for r in rows) for m in modes}
    head = ['pair', 'batch', 'compile']
    unit = next((_rate(r, m)[1] for r in rows for m in modes if _rate(r, m)[1]), 'img/s')
    for m in modes:
        head += [f'{m} base ({unit})', f'{m} steps ({unit})', f'{m} ratio', f'{m} warm-up base/steps (s)']
        head += [f'{m} mem base/steps (MiB)'] if memory[m] else []
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    # a cell is a baseline row and a Steps row with the same pair, batch and compilation; the same cell measured
    # again (e.g. another --checkpoint-steps in a merged file) starts a new group
    groups: List[Tuple[Tuple[Any, ...], Dict[str, Dict[str, Any]]]] = []
    for r in rows:
        bs = next((r[f'{m}_batch_size'] for m in modes if f'{m}_batch_size' in r), '')
        pair = r['pair'] + (f' ({r["model_kwargs"]})' if r.get('model_kwargs') else '')
        key = (pair, bs, _compile_label(r))
        group = next((d for k, d in reversed(groups) if k == key and r['role'] not in d), None)
        if group is None:
            group = {}
            groups.append((key, group))
        group[r['role']] = r
    for (pair, bs, comp), d in groups:
        if 'baseline' not in d or 'steps' not in d:
            continue
        b, s = d['baseline'], d['steps']
        ckpt = int(s.get('checkpoint_steps') or 0)
        cells = [pair + (f', first {plural(ckpt, "step")} checkpointed' if ckpt else ''), str(bs), str(comp)]
        for m in modes:
            width = 5 if memory[m] else 4
            err = s.get(f'{m}_error') or b.get(f'{m}_error')
            if err or f'{m}_batch_size' not in s:
                cells += [err or f'{m} not measured'] + [''] * (width - 1)
                continue
            mb, ms = b.get(f'{m}_peak_mem_mb'), s.get(f'{m}_peak_mem_mb')
            mem = 'not measurable here' if mb is None or ms is None else f'{mb:.0f} / {ms:.0f}'
            wb, ws = b.get(f'{m}_warmup_s'), s.get(f'{m}_warmup_s')
            warm = 'not recorded' if wb is None or ws is None else f'{wb:.1f} / {ws:.1f}'
            cells += [f'{_rate(b, m)[0]:.2f}', f'{_rate(s, m)[0]:.2f}', f'{s[f"{m}_ratio"]:.3f}', warm]
            cells += [mem] if memory[m] else []
        lines.append('| ' + ' | '.join(cells) + ' |')
    if rows:
        r0 = rows[0]
        size = next((r0.get(f'{m}_{k}') for m in modes for _, k, _ in _UNITS.values() if r0.get(f'{m}_{k}')), None)
        what = 'context' if r0.get('task') == 'lm' else 'img'
        extra = [f'{what} {size}'] if size else []
        lines.append('')
        lines.append(', '.join([f'{r0["device"]} ({r0["device_name"]})', str(r0['dtype']), str(r0['memory_format'])]
                               + extra + [
            f'warm-up {r0["warmup"]}', f'median of {plural(r0["runs"], "alternating run")} x '
            f'{plural(r0["iters"], "iteration")}',
            f'{r0.get("clock", "wall")} clock; torch {r0["torch"]}', f'timm {r0["timm"]}',
            f'stepsnet {r0["stepsnet"]}']))
    return '\n'.join(lines) + '\n'


def write_csv(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Write the rows (union of their keys, in first-seen order) atomically."""
    fields: List[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, restval='')
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str) -> List[Dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers converted back (to merge runs made one pair at a time)."""
    def conv(v: str) -> Any:
        if v == '':
            return None
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with open(path, newline='') as f:
        return [{k: (v if k in _TEXT_COLUMNS else conv(v)) for k, v in r.items() if v != '' or k in _TEXT_COLUMNS}
                for r in csv.DictReader(f)]


_TEXT_COLUMNS = {'model', 'pair', 'role', 'task', 'compile', 'compile_scope', 'model_kwargs', 'infer_runs',
                 'train_runs', 'infer_error', 'train_error', 'dtype', 'memory_format', 'device', 'device_name',
                 'torch', 'timm', 'stepsnet', 'python', 'clock'}


def plot_ratios(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Bar chart of the Steps / baseline throughput ratio per pair (and compilation) and mode."""
    plt = pyplot()
    steps_rows = [r for r in rows if r['role'] == 'steps']
    modes = [m for m in ('infer', 'train') if any(r.get(f'{m}_ratio') is not None for r in steps_rows)]
    several = len({_compile_label(r) for r in steps_rows}) > 1
    labels = [r['model'] + (f'\n{_compile_label(r)}' if several else '') for r in steps_rows]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(steps_rows), 3.6))
    w = 0.8 / max(len(modes), 1)
    for j, m in enumerate(modes):
        xs = [i + (j - (len(modes) - 1) / 2) * w for i in range(len(steps_rows))]
        vals = [r.get(f'{m}_ratio') for r in steps_rows]
        vals = [float('nan') if v is None else v for v in vals]
        ax.bar(xs, vals, width=w, label=m)
        for x, v in zip(xs, vals):
            if v == v:
                ax.text(x, v + 0.01, f'{v:.2f}', ha='center', va='bottom', fontsize=8)
    ax.axhline(1.0, color='k', lw=0.8)
    ax.set_xticks(range(len(steps_rows)), labels, rotation=15, fontsize=8)
    ax.set_ylabel('Steps / baseline throughput')
    r0 = rows[0] if rows else {}
    ax.set_title(f'{r0.get("device", "")} {r0.get("dtype", "")}, batch '
                 f'{r0.get("infer_batch_size", r0.get("train_batch_size", ""))}', fontsize=9)
    ax.set_ylim(0, 1.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
