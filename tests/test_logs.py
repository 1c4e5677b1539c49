"""Logs a person can read: every training and evaluation command, its output going to a pipe, writes plain lines
(a header, a line per log interval and per evaluation), never a progress bar's carriage returns or cursor codes."""
import json
import os
import re
import subprocess
import sys

from stepsnet.engine import RESULT_KEYS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = r'''
import sys
from stepsnet.cli import main
from stepsnet.data.layouts import write_ade20k, write_coco
from stepsnet.data.text import prepare_text

tmp, recipe = sys.argv[1], sys.argv[2]
prepare_text(f'{tmp}/text', max_bytes=60_000)
write_coco(f'{tmp}/coco', train_images=2, val_images=1, size=(80, 64), seed=5, shape_classes=True)
write_ade20k(f'{tmp}/ade', train_images=2, val_images=1, size=(80, 64), seed=6, shape_classes=True)
lm = ['--data-dir', f'{tmp}/text', '--model', 'gpt_tiny', '--batch-size', '2', '--max-iters', '4', '--eval-interval',
      '2', '--eval-iters', '1', '--final-eval-windows', '2', '--log-interval', '1', '--warmup-iters', '1',
      '--no-tensorboard', '--device', 'cpu', '--threads', '1']
dense = ['--backbone', 'test_steps_resnet', '--batch-size', '2', '--workers', '0', '--lr', '1e-3', '--log-interval',
         '1', '--device', 'cpu', '--threads', '1', '--no-tensorboard']
commands = [
    ['train', '-c', recipe, '--epochs', '1', '--batch-size', '32', '--max-train-batches', '2', '--eval-batch-size',
     '360', '--workers', '0', '--threads', '1', '--no-tensorboard', '--warmup-epochs', '0', '--out-dir', f'{tmp}/cls'],
    ['validate', '--checkpoint', f'{tmp}/cls/last.pth', '--workers', '0'],
    ['train-lm', *lm, '--out-dir', f'{tmp}/lm'],
    ['train-lm', *lm, '--no-progress', '--out-dir', f'{tmp}/lm-quiet'],
    ['train-det', *dense, '--data-dir', f'{tmp}/coco', '--epochs', '1', '--arch', 'retinanet', '--min-size', '64',
     '--max-size', '96', '--fpn-channels', '16', '--anchor-sizes', '16', '32', '64', '128', '256', '--warmup-iters',
     '1', '--out-dir', f'{tmp}/det'],
    ['eval-det', '--checkpoint', f'{tmp}/det/last.pth', '--device', 'cpu'],
    ['train-seg', *dense, '--data-dir', f'{tmp}/ade', '--max-iters', '2', '--num-classes', '4', '--channels', '16',
     '--aux-channels', '8', '--crop-size', '64', '80', '--scale', '96', '64', '--warmup-iters', '1',
     '--eval-interval', '0', '--checkpoint-interval', '2', '--test-scale', 'none', '--out-dir', f'{tmp}/seg'],
    ['eval-seg', '--checkpoint', f'{tmp}/seg/last.pth', '--device', 'cpu', '--no-resize'],
]
for command in commands:
    print('=== ' + command[0], flush=True)
    if main(command) != 0:
        sys.exit(f'{command[0]} failed')
'''


def test_every_command_writes_plain_lines_to_a_pipe(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path), os.path.join(REPO, 'configs', 'cls',
                                                                                      'digits_cpu.yaml')],
                          cwd=str(tmp_path), env=env, capture_output=True, timeout=900)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    for stream in (out, err):
        assert '\r' not in stream and '\x1b' not in stream, stream[-2000:]
    train, _, lm, quiet, det, _, seg, _ = re.split(r'^=== .*$', out, flags=re.M)[1:]
    for text, folder in ((lm, 'lm'), (quiet, 'lm-quiet')):  # with and without --no-progress
        assert f'4 steps into {tmp_path}/{folder}' in text and 'step 1/4  loss ' in text
        assert 'step 2/4  val loss ' in text and 'final: val loss ' in text
    assert 'steps (1 epoch) into' in train and 'epoch   1/1  val loss' in train
    assert 'step 2/2 (epoch 1.00)  loss ' in train
    assert '1 step (1 epoch) into' in det and 'step 1/1: bbox_AP' in det  # counts in the right number
    assert '2 steps' in seg and 'step 2/2: mIoU' in seg
    assert 'validate test_steps_resnet on digits/val: 360 images' in err
    assert 'eval-det ' in err and 'eval-seg ' in err
    # the four tasks write the same results file, with the same keys
    for run, kind in (('cls', 'cls'), ('lm', 'lm'), ('lm-quiet', 'lm'), ('det', 'det'), ('seg', 'seg')):
        with open(tmp_path / run / 'results.json') as f:
            results = json.load(f)
        assert sorted(results) == sorted(RESULT_KEYS) and results['kind'] == f'stepsnet-{kind}', run
        assert results['steps'] == results['total_steps'] and results['final'], run
