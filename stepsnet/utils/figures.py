"""Figures written like every other file of a run: complete or not at all."""
import io
import os

from stepsnet.utils.checkpoint import atomic_write_bytes

__all__ = ['pyplot', 'save_figure']


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only: no display is needed, none is opened)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str, dpi: int = 120) -> None:
    """Render ``fig`` in the format of ``path``'s extension (PNG without one), write it through a temporary file
    and a rename, and close it."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=os.path.splitext(path)[1].lstrip('.').lower() or 'png', dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
