"""Depth benchmark (Fig. 6c/d): configurations, rows, files and errors (the pilot is in test_compare.py)."""
import csv

import pytest
import timm

import stepsnet  # noqa: F401
from stepsnet.analysis.depth_speed import model_config, swin_depth_config

pytestmark = pytest.mark.usefixtures('one_thread')


def test_swin_depth_configs_have_the_requested_blocks():
    for blocks in (24, 34):
        for kind in ('residual', 'steps'):
            name, kw = swin_depth_config(blocks, kind, width=16, img_size=32, window_size=2)
            model = timm.create_model(name, num_classes=10, **dict(kw, num_heads=(1, 2, 4, 8)))
            n = sum(len(stage.blocks) for stage in model.layers)
            assert n == blocks, (blocks, kind, kw)
    _, kw = swin_depth_config(24, 'steps')
    assert kw['depths'] == (2, 2, 6, 2) and kw['steps_move'] == (0, 0, 2, 2)  # stage 3: 4 + 2 + 4 blocks
    _, kw = swin_depth_config(96, 'steps')
    assert kw['depths'] == (2, 2, 42, 2) and kw['steps_move'] == (0, 0, 20, 2)  # stage 3: 40 + 20 + 22 blocks
    with pytest.raises(ValueError, match='expected an even number'):
        swin_depth_config(25, 'steps')
    with pytest.raises(ValueError, match='at least 7 blocks'):
        swin_depth_config(6, 'residual')
    with pytest.raises(ValueError, match='family'):
        model_config('resnet', 8, 'steps')


def test_cli_depth_benchmark(tmp_path, capsys):
    from stepsnet.cli import main
    rc = main(['analyze', 'depth', '--family', 'deit', '--blocks', '4', '--width', '32', '--img-size', '32',
               '--runs', '1', '--warmup', '0', '--batch-sizes', '2', '4', '--throughput-batch', '2',
               '--out-dir', str(tmp_path), '--no-progress'])
    assert rc == 0
    out = capsys.readouterr().out
    assert 'throughput Steps/res' in out and '1.6x throughput' in out
    rows = list(csv.DictReader(open(tmp_path / 'depth_benchmark.csv')))
    assert [(r['kind'], r['blocks']) for r in rows] == [('residual', '4'), ('steps', '4')]
    for res, steps in zip(rows[::2], rows[1::2]):
        assert res['layers'] == steps['layers']  # same depth ...
        assert int(steps['macs']) < int(res['macs'])  # ... narrower early steps
        assert float(steps['throughput_ratio']) > 0
        assert float(res['img_per_s']) > 0 and res['mem_growth_mb'] != ''
    assert (tmp_path / 'depth_benchmark.png').stat().st_size > 1000


def test_cli_depth_checks_every_setting_before_measuring(tmp_path, capsys):
    from stepsnet.cli import main
    rc = main(['analyze', 'depth', '--family', 'deit', 'swin', '--blocks', '8', '12', '--out-dir', str(tmp_path),
               '--no-progress'])
    assert rc == 2 and 'a Steps-Swin-like model of 8 blocks' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written
