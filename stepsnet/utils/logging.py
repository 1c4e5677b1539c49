"""Metric logs: a CSV file per run (always) and TensorBoard (when installed, or required when asked for); progress
bars on terminals only."""
import csv
import io
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

from stepsnet.utils.checkpoint import atomic_write_text, storage_error

__all__ = ['CSVLogger', 'MetricWriter', 'interactive']


def interactive(progress: bool = True) -> bool:
    """Whether to draw a progress bar: asked for and stderr is a terminal (in a file or a pipe, the carriage
    returns and cursor codes of a bar would be noise; the loops print plain lines there instead)."""
    return bool(progress) and sys.stderr.isatty()


class CSVLogger:
    """Append rows of metrics to a CSV file; the header is the first row's keys plus any later new keys.

    On resume, ``truncate_after(step)`` drops rows logged after the checkpoint's step, so a resumed run's log
    reads as if the run had never stopped.
    """

    def __init__(self, path: str, step_key: str = 'iter'):
        self.path = path
        self.step_key = step_key
        self.fields: List[str] = []
        self.rows: List[Dict[str, Any]] = []
        if os.path.isfile(path):
            with open(path, newline='') as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = list(reader)

    def truncate_after(self, step: int) -> None:
        self.rows = [r for r in self.rows if r.get(self.step_key) in (None, '') or int(r[self.step_key]) <= step]
        self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO(newline='')
        w = csv.DictWriter(buf, fieldnames=self.fields, restval='')
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def log(self, row: Mapping[str, Any]) -> None:
        row = {k: v for k, v in row.items()}
        new = [k for k in row if k not in self.fields]
        self.rows.append(row)
        if new or not os.path.isfile(self.path):
            self.fields.extend(new)
            self._rewrite()
            return
        try:
            with open(self.path, 'a', newline='') as f:
                csv.DictWriter(f, fieldnames=self.fields, restval='').writerow(row)
        except OSError as e:
            raise storage_error(e, self.path) from e


class MetricWriter:
    """CSV log (always) plus TensorBoard scalars in ``tb/``.

    ``tensorboard``: None logs to TensorBoard when ``torch.utils.tensorboard`` can be imported and is silent when it
    cannot (the default of every run: TensorBoard is optional); True requires it; False writes the CSV log only.

    Raises:
        ValueError: ``tensorboard=True`` and the ``tensorboard`` package cannot be used (one line saying how to
            install it).
    """

    def __init__(self, out_dir: str, filename: str = 'log.csv', tensorboard: Optional[bool] = None,
                 step_key: str = 'iter'):
        self.csv = CSVLogger(os.path.join(out_dir, filename), step_key=step_key)
        self.step_key = step_key
        self.tb: Optional[Any] = None
        if tensorboard or tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(out_dir, 'tb'))
            except Exception as e:  # tensorboard is optional, unless asked for
                if tensorboard:
                    raise ValueError(f'tensorboard is asked for, but it cannot be used ({type(e).__name__}: '
                                     f'{str(e).splitlines()[0] if str(e) else ""}): pip install tensorboard, or drop '
                                     '--tensorboard; the CSV log is written either way') from e
                self.tb = None

    def log(self, row: Mapping[str, Any]) -> None:
        self.csv.log(row)
        if self.tb is not None:
            step = int(row.get(self.step_key, 0))
            for k, v in row.items():
                if k != self.step_key and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
