"""The benchmark library: pairs, alternating timed runs, medians, ratios and timm's CSV columns (no timing asserts)."""
import csv

import pytest
import torch

from stepsnet.analysis import speed, speed_memory
from stepsnet.cli import main as cli_main


def test_parse_pair():
    assert speed.parse_pair('resnet50, steps_resnet50') == ('resnet50', 'steps_resnet50')
    with pytest.raises(ValueError, match='BASELINE,STEPS'):
        speed.parse_pair('resnet50')


def test_benchmark_pair_alternates_and_reports_medians(monkeypatch):
    calls = []
    real = speed._Runner.timed

    def timed(self, iters, clock):
        calls.append(self.name)
        return real(self, iters, clock)
    monkeypatch.setattr(speed._Runner, 'timed', timed)
    res = speed.benchmark_pair('test_steps_resnet', 'test_steps_vit', mode='train', batch_size=2, img_size=32,
                               warmup=1, runs=3, iters=1, num_classes=10)
    a, b = 'test_steps_resnet', 'test_steps_vit'
    assert calls == [a, b, b, a, a, b]  # alternating, order swapped every round
    for role in ('baseline', 'steps'):
        r = res[role]
        assert len(r['runs']) == 3 and r['samples_per_sec'] == sorted(r['runs'])[1]
        assert r['step_time'] == pytest.approx(1000 * 2 / r['samples_per_sec'])
        assert r['peak_mem_mb'] is None or r['peak_mem_mb'] >= 0
    ratios = sorted(s / b for b, s in zip(res['baseline']['runs'], res['steps']['runs']))
    assert res['ratio'] == pytest.approx(ratios[1])


def test_benchmark_cli_writes_timm_columns(tmp_path, capsys):
    out = tmp_path / 'bench.csv'
    rc = cli_main(['benchmark', '--pair', 'test_steps_resnet,test_steps_resnet_bottleneck', '--batch-size', '2',
                   '--img-size', '32', '--num-classes', '10', '--runs', '2', '--iters', '1', '--warmup', '1',
                   '--csv', str(out), '--png', str(tmp_path / 'bench.png'), '--no-progress', '--no-memory',
                   '--clock', 'process', '--threads', '1', '--any-pair'])
    assert rc == 0
    text = capsys.readouterr().out
    assert '| test_steps_resnet,test_steps_resnet_bottleneck |' in text and 'median of 2 alternating runs' in text
    with open(out, newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['role'] for r in rows] == ['baseline', 'steps']
    for col in ('model', 'infer_samples_per_sec', 'infer_step_time', 'infer_batch_size', 'infer_img_size',
                'param_count', 'train_samples_per_sec', 'train_step_time', 'train_batch_size', 'train_img_size',
                'infer_ratio', 'train_ratio', 'device', 'dtype', 'memory_format', 'torch', 'timm'):
        assert col in rows[0], col
    assert rows[0]['infer_ratio'] == '1.0' and float(rows[1]['infer_ratio']) > 0
    assert rows[1]['memory_format'] == 'nchw' and rows[1]['infer_batch_size'] == '2' and rows[1]['clock'] == 'process'
    assert (tmp_path / 'bench.png').stat().st_size > 1000


def test_bad_benchmark_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be 'infer' or 'train', got 'eval'"):
        speed.benchmark_pair('a', 'b', mode='eval')
    with pytest.raises(ValueError, match="only applies to device cpu, got 'cuda'"):
        speed.benchmark_pair('a', 'b', device='cuda', clock='process')
    with pytest.raises(ValueError, match='need runs >= 1'):
        speed.benchmark_pair('a', 'b', runs=0)


def test_eager_and_compiled_alternate_in_the_same_rounds(monkeypatch):
    calls = []
    real = speed._Runner.timed

    def timed(self, iters, clock):
        calls.append((self.name, self.compile))
        return real(self, iters, clock)
    monkeypatch.setattr(speed._Runner, 'timed', timed)
    a, b = 'test_steps_resnet', 'test_steps_resnet_bottleneck'
    rows = speed.benchmark_pairs([(a, b)], modes=('train',), batch_size=2, img_size=32, warmup=1, runs=2, iters=1,
                                 num_classes=10, memory=False, compile=(None, 'eager'))
    round1 = [(a, 'none'), (b, 'none'), (a, 'eager'), (b, 'eager')]
    assert calls == round1 + round1[::-1]
    assert [(r['role'], r['compile']) for r in rows] == [('baseline', 'none'), ('steps', 'none'),
                                                         ('baseline', 'eager'), ('steps', 'eager')]
    for r in rows:
        assert r['train_samples_per_sec'] > 0 and r['train_warmup_s'] >= 0 and len(r['train_runs'].split()) == 2
    assert rows[0]['train_ratio'] == 1.0 and rows[3]['train_ratio'] > 0
    table = speed.format_ratios(rows)
    assert f'| {a},{b} | 2 | none |' in table and f'| {a},{b} | 2 | eager |' in table and 'warm-up' in table


def test_out_of_memory_is_recorded_and_the_other_variant_measured(monkeypatch):
    real = speed._Runner.warm_up

    def warm_up(self, iters):
        if self.compile != 'none':
            raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return real(self, iters)
    monkeypatch.setattr(speed._Runner, 'warm_up', warm_up)
    rows = speed.benchmark_pairs([('test_steps_resnet', 'test_steps_vit')], modes=('infer',), batch_size=2,
                                 img_size=32, warmup=1, runs=1, iters=1, num_classes=10, memory=False,
                                 compile=(None, 'inductor'))
    by = {(r['role'], r['compile']): r for r in rows}
    assert by['steps', 'inductor']['infer_error'] == 'out of memory' and 'infer_ratio' not in by['steps', 'inductor']
    assert by['steps', 'none']['infer_samples_per_sec'] > 0 and 'infer_error' not in by['steps', 'none']
    assert '| out of memory |' in speed.format_ratios(rows)
    with pytest.raises(RuntimeError, match='out of memory'):  # a single measurement does not hide it
        speed.benchmark_pair('test_steps_resnet', 'test_steps_vit', batch_size=2, img_size=32, runs=1, iters=1,
                             num_classes=10, compile='inductor')


def test_cells_after_the_time_budget_are_skipped(tmp_path):
    import time
    rows = speed.benchmark_pairs([('test_steps_resnet', 'test_steps_vit')], batch_sizes=[2, 4], img_size=32,
                                 num_classes=10, deadline=time.monotonic() - 1)
    assert len(rows) == 4 and all(r[f'{m}_error'] == 'skipped (time budget)' for r in rows for m in ('infer', 'train'))
    speed.write_csv(rows, str(tmp_path / 'b.csv'))
    back = speed.read_csv(str(tmp_path / 'b.csv'))
    assert back[0]['train_error'] == 'skipped (time budget)' and back[0]['infer_batch_size'] == 2
    assert speed.format_ratios(back).count('skipped (time budget)') == 4


def test_lm_pair_in_tokens_per_second(tmp_path, capsys, one_thread):
    out = tmp_path / 'lm.csv'
    rc = cli_main(['benchmark', '--task', 'lm', '--pair', 'gpt_tiny,steps_gpt_tiny', '--model-kwargs', 'n_layer=4',
                   '--seq-len', '16', '--batch-size', '2', '--runs', '2', '--iters', '1', '--warmup', '1',
                   '--csv', str(out), '--no-progress', '--no-memory', '--clock', 'process'])
    assert rc == 0
    text = capsys.readouterr().out
    assert 'train base (tok/s)' in text and 'context 16' in text and '| gpt_tiny,steps_gpt_tiny (n_layer=4) |' in text
    rows = speed.read_csv(str(out))
    assert [(r['model'], r['task']) for r in rows] == [('gpt_tiny', 'lm'), ('steps_gpt_tiny', 'lm')]
    for r in rows:
        assert r['train_seq_len'] == 16 and r['train_tokens_per_sec'] > 0 and 'train_samples_per_sec' not in r
        assert r['train_step_time'] == pytest.approx(1000 * 2 * 16 / r['train_tokens_per_sec'], rel=1e-3)
    # 16 layers (8 in the 3-step plan's first step) is still a pair of twins
    speed.check_pair('gpt_tiny', 'steps_gpt_tiny', task='lm', model_kwargs={'n_layer': 16})
    with pytest.raises(ValueError, match='is swapped'):
        speed.check_pair('steps_gpt_tiny', 'gpt_tiny', task='lm')
    assert cli_main(['benchmark', '--task', 'lm', '--pair', 'gpt_tiny,steps_gpt_tiny', '--img-size', '32']) != 0
    assert 'the context length of task lm is --seq-len' in capsys.readouterr().err


def test_profile_groups_operators_by_family(tmp_path, one_thread):
    profiles = []
    speed.benchmark_pairs([('test_steps_resnet', 'test_steps_vit')], modes=('train',), batch_size=2, img_size=32,
                          warmup=1, runs=1, iters=1, num_classes=10, memory=False, profiles=profiles)
    assert [p['model'] for p in profiles] == ['test_steps_resnet', 'test_steps_vit']
    assert all(p['total_ms'] > 0 and p['ops'] and p['step_ms'] > 0 for p in profiles)
    text = speed.format_profile(profiles)
    assert '| matmul / conv |' in text and '| **total** |' in text and 'Top operators of test_steps_vit' in text
    groups = {name: speed_memory._op_group(name) for name in (
        'aten::addmm', 'aten::convolution_backward', 'aten::_scaled_dot_product_flash_attention_for_cpu',
        'cpp_fused_add_native_layer_norm_3', 'aten::native_layer_norm', 'aten::gelu', 'aten::threshold_backward',
        'aten::cat', 'aten::copy_', 'Optimizer.step#SGD.step', 'aten::add_')}
    assert groups == {
        'aten::addmm': 'matmul / conv', 'aten::convolution_backward': 'matmul / conv',
        'aten::_scaled_dot_product_flash_attention_for_cpu': 'attention',
        'cpp_fused_add_native_layer_norm_3': 'compiled kernels (fused)', 'aten::native_layer_norm': 'normalisation',
        'aten::gelu': 'activation', 'aten::threshold_backward': 'activation', 'aten::cat': 'concat / copy / layout',
        'aten::copy_': 'concat / copy / layout', 'Optimizer.step#SGD.step': 'optimizer', 'aten::add_': 'elementwise'}


def test_regional_compilation_compiles_the_steps_block_classes_in_both_models(one_thread):
    from timm.models.vision_transformer import Block
    runners = [speed._Runner(n, 'train', 2, 32, 'cpu', 'float32', False, 10, compile='eager')
               for n in ('test_vit', 'test_steps_vit')]
    types = speed._block_types(runners[1].model)
    assert types == (Block,)
    for r in runners:
        r.compile_model('blocks', types)
        blocks = [m for m in r.model.modules() if isinstance(m, Block)]
        assert blocks and all(b._compiled_call_impl is not None for b in blocks)
        assert r.model.patch_embed._compiled_call_impl is None and r.fn is r.model
        r.warm_up(1)
    rows = speed.benchmark_pairs([('test_vit', 'test_steps_vit')], modes=('infer',), batch_size=2, img_size=32,
                                 warmup=1, runs=1, iters=1, num_classes=10, memory=False, compile=(None, 'eager'),
                                 compile_scope='blocks')
    assert [r['compile_scope'] for r in rows] == ['', '', 'blocks', 'blocks']
    assert '| test_vit,test_steps_vit | 2 | eager (blocks) |' in speed.format_ratios(rows)
    with pytest.raises(ValueError, match="has none; expected a Steps model second"):
        speed.benchmark_pair('test_vit', 'test_vit', batch_size=2, img_size=32, runs=1, iters=1, num_classes=10,
                             compile='eager', compile_scope='blocks')


def test_cpu_peak_memory_is_the_peak_of_the_step_allocations():
    before = torch.ones(4 * 2 ** 20, dtype=torch.uint8)  # allocated before the step: not counted

    def step():
        a = torch.ones(8 * 2 ** 20, dtype=torch.uint8)
        b = torch.ones(2 * 2 ** 20, dtype=torch.uint8)  # peak here: 10 MiB
        del a
        c = torch.ones(2 ** 20, dtype=torch.uint8)
        del b, c
    assert speed.peak_memory_mb(step, 'cpu') == pytest.approx(10, abs=0.05)
    del before


def test_merged_runs_of_one_pair_stay_apart(tmp_path):
    """Two measurements of one pair (here without and with step checkpointing) keep a table row each."""
    rows = []
    for k in (0, 1):
        rows += speed.benchmark_pairs([('test_vit', 'test_steps_vit')], modes=('train',), batch_size=2, img_size=32,
                                      warmup=1, runs=1, iters=1, num_classes=10, memory=False, checkpoint_steps=k)
    speed.write_csv(rows, str(tmp_path / 'm.csv'))
    back = speed.read_csv(str(tmp_path / 'm.csv'))
    body = [line for line in speed.format_ratios(back).splitlines() if line.startswith('| test_vit')]
    assert len(body) == 2 and 'checkpointed' not in body[0] and 'first 1 step checkpointed' in body[1]
    assert [r['checkpoint_steps'] for r in back] == [0, 0, 0, 1]


def test_a_cpu_benchmark_prints_only_what_was_asked_for(tmp_path):
    """A fresh process (the profiler's library reads its log level once): nothing on stderr, neither Kineto's
    start/stop lines nor, on a CUDA build without a GPU, its failed GPU count; the table has no dash cells and no
    column that was not measured."""
    import os
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != 'KINETO_LOG_LEVEL'}
    env.update(OMP_NUM_THREADS='1', PYTHONPATH=repo + os.pathsep + env.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, '-m', 'stepsnet', 'benchmark', '--pair', 'test_steps_resnet,test_steps_resnet_bottleneck',
         '--any-pair', '--img-size', '32', '--batch-size', '2', '--num-classes', '10', '--runs', '1', '--iters', '1',
         '--warmup', '1', '--threads', '1', '--mode', 'infer'], cwd=str(tmp_path), env=env, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == '', proc.stderr
    out = proc.stdout
    assert 'infer test_steps_resnet,test_steps_resnet_bottleneck batch 2: Steps / baseline ' in out
    assert 'ratio none' not in out and '| - |' not in out and 'median of 1 alternating run x 1 iteration,' in out
    assert 'infer mem base/steps (MiB)' in out  # measured: the profiler's allocation records


def test_a_column_not_measured_is_left_out():
    rows = [dict(pair='a,b', role=role, infer_batch_size=2, infer_samples_per_sec=10.0, infer_ratio=1.0,
                 infer_warmup_s=0.1, infer_peak_mem_mb=None, device='cpu', device_name='x', dtype='float32',
                 memory_format='nchw', warmup=1, runs=2, iters=1, torch='t', timm='t', stepsnet='s')
            for role in ('baseline', 'steps')]
    table = speed.format_ratios(rows)
    assert 'mem' not in table and '| - |' not in table and '| - ' not in table
    assert table.splitlines()[2] == '| a,b | 2 | none | 10.00 | 10.00 | 1.000 | 0.1 / 0.1 |'
