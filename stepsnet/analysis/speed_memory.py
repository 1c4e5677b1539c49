"""What the throughput benchmark (:mod:`stepsnet.analysis.speed`) measures besides time: the peak memory of one
iteration on top of what is allocated (CUDA's allocator; on a CPU the profiler's allocation records, or the growth of
the peak resident set), and the profile of an iteration by operator (self time per operator and per family of
operators), with the profiler's own log lines kept off the console."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

__all__ = ['sync', 'peak_memory_mb', 'is_oom', 'free_memory', 'profile_ops', 'format_profile']


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


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


def is_oom(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, RuntimeError) and ('out of memory' in text or "can't allocate memory" in text)


def free_memory(device: str) -> None:
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


def profile_ops(runner: Any, iters: int) -> Dict[str, Any]:
    """Self time (ms per iteration) of every operator of ``iters`` iterations of ``runner`` (a model of the
    benchmark: ``step()``, ``device``, ``name``, ``compile``, ``mode``)."""
    from torch.profiler import ProfilerActivity, profile
    cuda = runner.device.startswith('cuda') and torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(runner.device)
    with _quiet_profiler(), profile(activities=activities) as prof:
        for _ in range(iters):
            runner.step()
        sync(runner.device)
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
