"""Where a number was measured: the machine, its threads and the libraries that computed it.

Runs are bit-exact on one machine at a fixed thread count, not across CPUs (different vector units and BLAS
kernels round differently), so every result file records this next to its numbers.
"""
from __future__ import annotations

import os
import platform
import re
from typing import Any, Dict


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> Dict[str, Any]:
    """CPU model and count, the torch thread count, torch and its BLAS and CPU vector capability, CUDA device."""
    import torch
    config = torch.__config__.show()
    blas = re.search(r'BLAS_INFO=(\w+)', config)
    capability = re.search(r'CPU capability usage: (\w+)', config)
    info: Dict[str, Any] = dict(
        cpu=_cpu_model(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
        blas=blas.group(1) if blas else None, cpu_capability=capability.group(1) if capability else None,
        python=platform.python_version(), system=f'{platform.system()} {platform.machine()}')
    if torch.cuda.is_available():
        info['cuda_device'] = torch.cuda.get_device_name(0)
    return info
