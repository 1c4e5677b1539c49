"""Export Steps models (or any image model) to ONNX and check the export against PyTorch.

Step by Step Network (StepsNet), arXiv:2511.14329. A Steps trunk is a plain sequence of split, block and concat
operations, so it exports like its host model: :func:`export_onnx` writes the file with PyTorch's exporter (the
``torch.export``-based one by default) and :func:`check_onnx` runs it with onnxruntime on the CPU and compares the
outputs with the model's own. Example::

    import timm, stepsnet
    from stepsnet.onnx import export_onnx
    model = timm.create_model('steps_swin_tiny_patch4_window7_224')
    export_onnx(model, 'steps_swin_t.onnx', input_size=(3, 224, 224))   # exports, then checks (atol 1e-4)
"""
import os
import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from stepsnet.utils.checkpoint import storage_error, temporary_beside

__all__ = ['export_onnx', 'check_onnx']

PathLike = Union[str, os.PathLike]


def _example_input(model: nn.Module, input_size: Sequence[int], batch_size: int) -> torch.Tensor:
    if len(input_size) != 3 or any(int(s) <= 0 for s in input_size):
        raise ValueError(f'input_size must be (channels, height, width) with positive sizes, got {tuple(input_size)}')
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device('cpu')
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *input_size), generator=generator).to(device)


def export_onnx(
        model: nn.Module,
        path: PathLike,
        input_size: Sequence[int] = (3, 224, 224),
        batch_size: int = 1,
        opset_version: Optional[int] = None,
        dynamo: bool = True,
        check: bool = True,
        atol: float = 1e-4,
        rtol: float = 1e-4,
) -> str:
    """Export ``model`` (in eval mode) to an ONNX file with one input ``x`` and one output ``y``.

    The file is written under a temporary name and renamed when complete, so a failed export leaves nothing behind;
    it gets the permissions of any new file (the umask's), not those of a temporary file.

    Args:
        model: The model; it is put in eval mode (and restored afterwards).
        path: Output ``.onnx`` file.
        input_size: (channels, height, width) of the example input.
        batch_size: Batch size of the example input.
        opset_version: ONNX opset; None uses the exporter's default.
        dynamo: Use the ``torch.export``-based exporter (PyTorch's default); False uses the TorchScript one.
        check: Run the file with onnxruntime and compare with PyTorch (see :func:`check_onnx`).
        atol: Absolute tolerance of the check.
        rtol: Relative tolerance of the check.

    Returns:
        The path written.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    path = os.fspath(path)
    x = _example_input(model, input_size, batch_size)
    was_training = model.training
    model.eval()
    try:
        # a hidden file beside the target, with the mode open() would give it (not mkstemp's 0600); a folder that
        # cannot be written is named in the error, not the temporary file
        with temporary_beside(path, suffix='.onnx') as tmp:
            with torch.no_grad(), warnings.catch_warnings():
                kwargs = dict(input_names=['x'], output_names=['y'], opset_version=opset_version, dynamo=dynamo)
                if dynamo:
                    kwargs.update(external_data=False, verbose=False)  # no progress lines of the exporter
                else:
                    # dynamo=False is the caller's explicit choice of the TorchScript exporter (its documented
                    # fallback), so torch's advice to leave it reaches them as noise: these exact deprecation
                    # messages are dropped for this call, nothing else
                    for message in (r'You are using the legacy TorchScript-based ONNX export',
                                    r'The feature will be removed', r'`torch\.jit\.script` is deprecated'):
                        warnings.filterwarnings('ignore', message=message, category=DeprecationWarning)
                        warnings.filterwarnings('ignore', message=message, category=FutureWarning)
                torch.onnx.export(model, (x,), tmp, **kwargs)
            if check:
                check_onnx(model, tmp, x, atol=atol, rtol=rtol)
            try:
                os.replace(tmp, path)
            except OSError as e:
                e.filename = e.filename2 = None
                raise storage_error(e, path) from e
    finally:
        model.train(was_training)
    return path


@torch.no_grad()
def check_onnx(
        model: nn.Module,
        path: PathLike,
        x: torch.Tensor,
        atol: float = 1e-4,
        rtol: float = 1e-4,
) -> float:
    """Run the ONNX file with onnxruntime (CPU) on ``x`` and compare with ``model(x)`` in eval mode.

    Returns:
        The largest absolute difference.

    Raises:
        AssertionError: The outputs differ by more than ``atol + rtol * |expected|`` somewhere.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError('check_onnx needs onnxruntime: pip install onnxruntime') from e
    was_training = model.training
    model.eval()
    try:
        expected = model(x).float().cpu().numpy()
    finally:
        model.train(was_training)
    session = ort.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.float().cpu().numpy()})[0]
    if got.shape != expected.shape:
        raise AssertionError(f'ONNX output shape {got.shape} differs from PyTorch output shape {expected.shape}')
    diff = np.abs(got - expected)
    bad = diff > atol + rtol * np.abs(expected)
    if bad.any():
        raise AssertionError(
            f'ONNX and PyTorch outputs differ at {int(bad.sum())} of {bad.size} values '
            f'(max abs difference {float(diff.max()):.3g}; atol {atol}, rtol {rtol})')
    return float(diff.max())
