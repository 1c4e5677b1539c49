"""The benchmark library: pairs, alternating timed runs, medians, ratios and timm's CSV columns (no timing asserts)."""
import csv

import pytest

from stepsnet.analysis import speed
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
