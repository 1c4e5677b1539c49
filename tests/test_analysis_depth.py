"""Depth benchmark (Fig. 6c/d) and depth pilot (Fig. 1): configurations, rows, files and errors."""
import csv

import pytest
import timm

import stepsnet  # noqa: F401
from stepsnet.analysis.depth import model_config, swin_depth_config

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


def test_depth_pilot_rows_and_files(tmp_path):
    from stepsnet.analysis.depth import depth_pilot, format_pilot_table, plot_pilot, write_pilot_csv
    rows = depth_pilot(blocks=[4], width=32, heads=2, patch_size=8, epochs=1, batch_size=64,
                       output=str(tmp_path / 'runs'), progress=False, max_train_batches=2)
    assert [(r['kind'], r['blocks']) for r in rows] == [('residual', 4), ('steps', 4)]
    assert rows[0]['layers'] == rows[1]['layers'] and rows[1]['macs'] < rows[0]['macs']
    for r in rows:
        assert 0 <= r['val_top1'] <= 100 and 0 <= r['train_top1'] <= 100
        assert (tmp_path / 'runs' / f'{r["kind"]}_4' / 'last.pth').exists()
    write_pilot_csv(rows, str(tmp_path / 'pilot.csv'))
    plot_pilot(rows, str(tmp_path / 'pilot.png'))
    assert list(csv.DictReader(open(tmp_path / 'pilot.csv')))[1]['kind'] == 'steps'
    assert (tmp_path / 'pilot.png').stat().st_size > 1000
    assert 'val top-1 (final)' in format_pilot_table(rows)
