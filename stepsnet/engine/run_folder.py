"""A run's folder, owned by the engine: the lock, the policy for folders that already hold a run, the checkpoint
convention, ``config.json``, the metric log and ``results.json`` (:class:`RunFolder`)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch

from stepsnet.engine.core import DistEnv, Progress, Schedule, TrainState, barrier
from stepsnet.utils.checkpoint import (
    STORAGE_ERRNOS,
    CheckpointError,
    StorageError,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
    storage_error,
)
from stepsnet.utils.lock import LOCK_NAME, lock_folder
from stepsnet.utils.logging import MetricWriter
from stepsnet.utils.names import plural

# Version of the checkpoint layout written by RunFolder; files without it come from an earlier layout.
FORMAT_VERSION = 2


class RunError(ValueError):
    """A run folder or resume request that cannot be honoured (existing run, settings that differ)."""



class RunFolder:
    """A run's folder: the checkpoint convention, the policy for folders that already hold a run, the lock, the
    logs and the final results.

    Files: ``last.pth`` (the latest state: model, optimizer, scaler, EMA, progress, config, the task's
    metadata), ``best.pth`` (the state at the best evaluation), ``config.json`` (the run's settings and every
    change made on resume), ``log.csv``, ``tb/`` and, at the end, ``results.json`` (:data:`RESULTS`).

    Policy:

    * ``resume=None``: a folder holding ``last.pth`` is refused (:class:`RunError` naming the folder and what to
      do); the run starts fresh otherwise.
    * ``resume='auto'``: continue ``last.pth`` when it exists, else start fresh (for harnesses that re-run).
    * ``resume='last'`` (the CLI's ``--resume``): as ``auto``, but the folder must exist.
    * ``resume=PATH``: continue that checkpoint (it must exist), writing into this folder.

    A resumed run must have the stored settings, except for the fields the task lists as ``mutable`` (e.g. the
    length of training, evaluation intervals, workers); differing settings are refused with the fields named,
    and a change of a mutable field is recorded in ``config.json``.

    A dry run (``dry_run`` > 0) neither reads nor makes nor locks the folder: :meth:`open` finds no run, :meth:`save`
    and :meth:`finish` write nothing (``finish`` writes the report to ``dry_run_report`` when one is named).

    Used as a context manager (``with RunFolder(...) as run:``) the folder is made and locked on entry
    (:func:`stepsnet.utils.lock.lock_folder`: a second writer is refused with the holder's process id and host),
    and on exit the lock is released; a run that fails before its first checkpoint removes what it made (the
    whole folder when it made the folder), and a file-system failure becomes one line naming the path.
    """

    LAST = 'last.pth'
    BEST = 'best.pth'
    CONFIG = 'config.json'
    LOG = 'log.csv'
    UNRECORDED = ('resume', 'progress')  # how a run is started or shown, not what it computes

    def __init__(self, out_dir: str, kind: str, resume: Optional[str], env: DistEnv,
                 tensorboard: Optional[bool] = False,
                 dry_run: int = 0, dry_run_report: Optional[str] = None,
                 dry_run_recipe: Optional[Mapping[str, Any]] = None):
        if not out_dir:
            raise ValueError('out_dir must name a folder')
        self.dry_run, self.dry_run_report = int(dry_run or 0), dry_run_report
        # the recipe's values of the fields a dry run's command line changed: its A100 floor is the recipe's
        self.dry_run_recipe: Dict[str, Any] = dict(dry_run_recipe or {})
        self.report: Optional[Any] = None  # the DryRunReport of a dry run, once fit has made it
        self.precision_note, self.amp_ran = '', None  # set by prepare: a dry run on a CPU runs in float32
        if self.dry_run:
            resume = None  # a dry run reads nothing from the folder and writes nothing into it
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise RunError(f'out_dir {out_dir!r} exists and is not a folder; expected a run folder')
        if resume in ('', 'none', 'no', False):
            resume = None
        if resume in (True, 'true', 'yes'):
            resume = 'auto'
        if resume == 'last' and not os.path.isdir(out_dir):
            raise RunError(f'--resume: {out_dir!r} does not exist, so there is no run to continue; check --out-dir, '
                           'or start a new run without --resume')
        self.out_dir, self.kind, self.resume, self.env, self.tensorboard = out_dir, kind, resume, env, tensorboard
        self.last = os.path.join(out_dir, self.LAST)
        self.best = os.path.join(out_dir, self.BEST)
        self.resumed_from: Optional[str] = None
        self.changes: Dict[str, Tuple[Any, Any]] = {}
        self.config: Dict[str, Any] = {}
        self.meta: Dict[str, Any] = {}
        self.checkpoint: Optional[Dict[str, Any]] = None
        self.header = ''
        self.workers_note = ''  # data-loader workers capped at this machine's cores (set by prepare)
        self.info: Dict[str, Any] = {}
        self.writer: Optional[MetricWriter] = None
        self.saved = False  # a checkpoint was written in this session
        self.trained = False  # this session trained (fit began)
        self._made: Optional[bool] = None
        self._before: set = set()
        self._lock: Optional[contextlib.AbstractContextManager] = None

    # -- the folder's life: checked, made and locked on entry; released and tidied on exit

    def _check_location(self) -> None:
        """The folder, or the nearest existing folder above it, must be writable (checked before anything is made)."""
        path = os.path.abspath(self.out_dir)
        while not os.path.exists(path):
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise RunError(f'cannot make run folder {self.out_dir!r}: {path!r} is a file')
        if not os.access(path, os.W_OK | os.X_OK):
            raise StorageError(f'cannot write run folder {self.out_dir!r}: {path!r} is not writable (read-only '
                               'file system or no permission); choose another --out-dir')

    @classmethod
    def of(cls, cfg: Any, kind: str, env: DistEnv) -> RunFolder:
        """The run folder of a task's config (a :class:`~stepsnet.config.run.RunConfig`): its ``out_dir``,
        ``resume``, ``tensorboard`` and dry-run fields."""
        return cls(cfg.out_dir, kind, cfg.resume, env, cfg.tensorboard, cfg.dry_run, cfg.dry_run_report,
                   cfg.dry_run_recipe)

    def __enter__(self) -> RunFolder:
        if not self.env.is_main or self.dry_run:
            return self
        self._check_location()
        self._made = not os.path.isdir(self.out_dir)
        try:
            os.makedirs(self.out_dir, exist_ok=True)
        except OSError as e:
            raise storage_error(e, self.out_dir) from e
        self._before = set(os.listdir(self.out_dir))
        lock = lock_folder(self.out_dir, f'a {self.kind} run')
        try:
            lock.__enter__()
        except BaseException as e:
            self._tidy()
            if isinstance(e, OSError) and not isinstance(e, StorageError):
                raise storage_error(e, os.path.join(self.out_dir, LOCK_NAME)) from e
            raise
        self._lock = lock
        return self

    def __exit__(self, kind, error, tb) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)
        if isinstance(error, Exception) and not self.saved and self.env.is_main:
            self._tidy()  # a start that failed: leave the folder as it was (a Ctrl-C keeps it to be resumed)
        if isinstance(error, OSError) and not isinstance(error, StorageError) and error.errno in STORAGE_ERRNOS:
            raise storage_error(error, error.filename or self.out_dir) from error

    def _tidy(self) -> None:
        if self._made is None or not os.path.isdir(self.out_dir):
            return
        if self._made:
            shutil.rmtree(self.out_dir, ignore_errors=True)
            return
        for name in set(os.listdir(self.out_dir)) - self._before - {LOCK_NAME}:
            path = os.path.join(self.out_dir, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)

    # -- the policy

    def open(self, config: Dict[str, Any], mutable: Iterable[str] = (),
             meta: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
        """Apply the policy; return the checkpoint to continue from (also kept as ``self.checkpoint``), or None.

        ``config`` and ``meta`` (the task's metadata: class names, model arguments) go into every checkpoint.

        Raises:
            RunError: The folder holds a run and no resume was asked for; the stored settings differ.
            FileNotFoundError: ``resume`` names a missing file.
            CheckpointError: The checkpoint is unreadable, of another kind, or of an earlier layout.
        """
        self.config, self.meta = config, dict(meta or {})
        path: Optional[str] = None
        if self.dry_run:
            return None
        if self.resume is None:
            if os.path.isfile(self.last):
                raise RunError(
                    f'{self.out_dir!r} already holds a run ({self.last}{self._where(self.last)}); pass --resume to '
                    'continue it, or choose another output folder (--out-dir) for a new run')
        elif self.resume in ('auto', 'last'):
            path = self.last if os.path.isfile(self.last) else None
            if path is None and self.resume == 'last' and self.env.is_main:
                print(f'{self.out_dir}: no checkpoint to continue yet; starting at step 0', flush=True)
        else:
            path = self.resume
            if os.path.isdir(path):
                raise RunError(f'resume path {path!r} is a folder; expected a checkpoint file such as '
                               f'{os.path.join(path, self.LAST)!r} (or --resume alone for {self.last!r})')
            if not os.path.isfile(path):
                raise FileNotFoundError(f'checkpoint {path!r} to resume from does not exist')
            here = os.path.isdir(self.out_dir) and os.path.samefile(os.path.dirname(os.path.abspath(path)),
                                                                    self.out_dir)
            if os.path.isfile(self.last) and not here:
                raise RunError(f'{self.out_dir!r} holds another run ({self.last}); resuming {path!r} into it would '
                               'overwrite it; choose another --out-dir')
        if path is None:
            return None
        state = self.load(path)
        stored = state.get('config') or {}
        differ = {k: (stored[k], v) for k, v in config.items()
                  if k in stored and stored[k] != v and k not in self.UNRECORDED}
        mutable = set(mutable)
        fixed = {k: d for k, d in differ.items() if k not in mutable}
        if fixed:
            lines = ', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in fixed.items())
            raise RunError(
                f'cannot resume {path!r} with other settings ({lines}); these fields must match the stored run. '
                f'Resume with the stored values, or start a new run in another output folder')
        self.changes = {k: d for k, d in differ.items() if k in mutable}
        self.resumed_from = path
        self.checkpoint = state
        return state

    def _where(self, path: str) -> str:
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
            return f', step {state["progress"]["step"]}'
        except Exception:  # only a hint for the message
            return ''

    def load(self, path: str) -> Dict[str, Any]:
        try:
            state = load_checkpoint(path, self.kind, required=('model', 'progress', 'config'))
        except CheckpointError as e:
            if os.path.abspath(path) != os.path.abspath(self.last) or not os.path.isfile(self.best):
                raise
            step = self._where(self.best)
            if not step:
                raise
            raise CheckpointError(f'{e}. {self.best!r} is intact ({step[2:]}): continue from it with --resume '
                                  f'{self.best} (the damaged {self.LAST} is replaced at the next checkpoint)') from e
        if state.get('version') != FORMAT_VERSION:
            raise CheckpointError(
                f'checkpoint {path!r} has layout version {state.get("version")!r}; this stepsnet reads version '
                f'{FORMAT_VERSION} (it was written by an earlier stepsnet); start a new run')
        return state

    # -- what a run writes

    def describe(self, header: str = '', **info: Any) -> None:
        """The line printed when training begins, and facts recorded in ``config.json`` (params, device, ...)."""
        self.header = header
        self.info.update(info)

    def begin(self, progress: Progress, schedule: Schedule) -> bool:
        """Start writing: ``config.json``, the log (cut back to the checkpoint's step), the header and the resume
        line. A finished run is reported as such and nothing is written; returns whether there is work to do."""
        main = self.env.is_main
        total = schedule.total_steps
        if progress.step >= total:
            if main:
                print(f'{self.out_dir}: the run is finished ({progress.step} of {plural(total, "step")}); nothing '
                      'to do', flush=True)
            return False
        self.trained = True
        header = '; '.join(p for p in (self.header, self.workers_note) if p)
        if main and self.dry_run:
            print(f'{header + "; " if header else ""}dry run: {min(self.dry_run, total)} of the recipe\'s '
                  f'{plural(total, "step")} and one evaluation batch; nothing is written into {self.out_dir}',
                  flush=True)
        elif main:
            self.write_config(self.config, self.info)
            self.writer = MetricWriter(self.out_dir, tensorboard=self.tensorboard, step_key='step')
            self.writer.csv.truncate_after(progress.step)
            epochs = f' ({plural(total / schedule.steps_per_epoch, "epoch")})' if schedule.steps_per_epoch else ''
            print(f'{header + "; " if header else ""}{plural(total, "step")}{epochs} into {self.out_dir}', flush=True)
            if self.resumed_from:
                spe = schedule.steps_per_epoch
                epoch = f' (epoch {progress.step // spe + 1})' if spe and progress.step % spe == 0 else ''
                print(f'resumed from {self.resumed_from} at step {progress.step} of {total}{epoch}', flush=True)
        return True

    def write_config(self, config: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> None:
        """``config.json``: the settings, plus the history of changes made on resume (main rank only)."""
        if not self.env.is_main:
            return
        path = os.path.join(self.out_dir, self.CONFIG)
        record: Dict[str, Any] = {}
        if self.resumed_from and os.path.isfile(path):
            try:
                with open(path, encoding='utf-8') as f:
                    record = json.load(f)
            except (OSError, ValueError):
                record = {}
        resumes = list(record.get('resumes', []))
        if self.resumed_from:
            resumes.append({'from': self.resumed_from, 'time': time.strftime('%Y-%m-%d %H:%M:%S'),
                            'changed': {k: {'stored': a, 'now': b} for k, (a, b) in self.changes.items()}})
        out = {'config': config if not self.resumed_from else record.get('config', config), **(extra or {})}
        if self.resumed_from:
            out['config_now'] = config
        out['resumes'] = resumes
        atomic_write_text(path, json.dumps(out, indent=2, default=str))

    def save(self, state: Dict[str, Any], best: bool = False) -> None:
        """Write ``last.pth`` (and ``best.pth``) atomically on the main rank; every rank waits for it.

        Raises:
            StorageError: The file system refused the write (full disk, read-only); the old file is unchanged.
        """
        if self.env.is_main and not self.dry_run:
            payload = dict(state, config=self.config, meta=self.meta, version=FORMAT_VERSION)
            save_checkpoint(payload, self.last, self.kind)
            self.saved = True
            if best:
                save_checkpoint(payload, self.best, self.kind)
        barrier()

    def results(self, state: TrainState, schedule: Schedule, final: Mapping[str, Any],
                **extra: Any) -> Dict[str, Any]:
        """The run's results, the same keys for every task (see :data:`RESULT_KEYS`); ``extra`` adds the task's."""
        p = state.progress
        spe = schedule.steps_per_epoch
        return dict(
            kind=self.kind, out_dir=self.out_dir, steps=p.step, total_steps=schedule.total_steps,
            epochs=round(p.step / spe, 4) if spe else None, items_seen=p.items, item_name=schedule.item_name,
            train_time_s=round(p.train_time, 3), metric=schedule.metric, higher_is_better=schedule.higher_is_better,
            best=p.best, best_step=p.best_step, final=dict(final), stopped_early=p.step < schedule.total_steps,
            last_checkpoint=self.last, best_checkpoint=self.best if os.path.isfile(self.best) else None, **extra,
            **({'dry_run': self.report.to_dict()} if self.report is not None else {}))

    def stored_results(self) -> Dict[str, Any]:
        """The ``results.json`` an earlier session of this run wrote ({} when there is none or it is unreadable)."""
        try:
            with open(os.path.join(self.out_dir, RESULTS), encoding='utf-8') as f:
                stored = json.load(f)
            return stored if isinstance(stored, dict) else {}
        except (OSError, ValueError):
            return {}

    def finish(self, results: Mapping[str, Any]) -> None:
        """Write ``results.json`` (main rank) when this session trained or the file is missing."""
        if self.dry_run:
            if self.env.is_main and self.dry_run_report and self.report is not None:
                self.report.write_json(self.dry_run_report)
            return
        path = os.path.join(self.out_dir, RESULTS)
        if self.env.is_main and (self.trained or not os.path.isfile(path)) and os.path.isfile(self.last):
            atomic_write_text(path, json.dumps(results, indent=2, default=str))


RESULTS = 'results.json'
# the keys of every run's results.json (and of the dict a task's train function returns under 'results')
RESULT_KEYS = ('kind', 'out_dir', 'steps', 'total_steps', 'epochs', 'items_seen', 'item_name', 'train_time_s',
               'metric', 'higher_is_better', 'best', 'best_step', 'final', 'stopped_early', 'last_checkpoint',
               'best_checkpoint', 'model', 'params')
