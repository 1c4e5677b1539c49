"""Channel masking (Table 6) and step dropping (Table 7): interventions, windows, tables, several models, errors."""
import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import stepsnet  # noqa: F401
from stepsnet.analysis.ablation import (
    aggregate,
    block_macs,
    default_mask_sizes,
    drop_differences,
    drop_step_table,
    drop_windows,
    dropped_blocks,
    find_steps,
    format_differences,
    format_drop_table,
    format_mask_table,
    mask_differences,
    mask_table,
    masked_input,
)
from stepsnet.engine import FORMAT_VERSION
from stepsnet.models.factory import classifier_from_checkpoint
from stepsnet.steps import StepPlan, Steps, plan_steps
from stepsnet.utils import CheckpointError

pytestmark = pytest.mark.usefixtures('one_thread')


class AddOne(nn.Module):
    def forward(self, x):
        return x + 1


class Trunked(nn.Module):
    def __init__(self, plan, make_block):
        super().__init__()
        self.blocks = Steps(plan, make_block, dim=-1)

    def forward(self, x):
        return self.blocks(x)


def test_masked_input_zeroes_exactly_the_requested_channels():
    model = Trunked(StepPlan((4, 10), (1, 1)), lambda w, i: nn.Identity())
    x = torch.randn(2, 3, 10) + 5
    with masked_input(model.blocks, first=3):
        y = model(x)
    assert (y[..., :3] == 0).all() and torch.equal(y[..., 3:], x[..., 3:])
    with masked_input(model.blocks, last=4):
        y = model(x)
    assert (y[..., 6:] == 0).all() and torch.equal(y[..., :6], x[..., :6])
    assert torch.equal(model(x), x)  # hook removed
    with pytest.raises(ValueError, match='cannot mask the first 11 channels of a Steps trunk of width 10'):
        with masked_input(model.blocks, first=11):
            pass


def test_dropped_blocks_become_identity():
    model = Trunked(StepPlan((4, 8), (3, 2)), lambda w, i: AddOne())
    x = torch.zeros(1, 2, 8)
    assert model(x)[0, 0].tolist() == [5] * 4 + [2] * 4
    with dropped_blocks([model.blocks[1], model.blocks[4]]):
        assert model(x)[0, 0].tolist() == [3] * 4 + [1] * 4
    assert model(x)[0, 0].tolist() == [5] * 4 + [2] * 4


def test_drop_windows_equalise_cost_and_cover_every_position():
    plan = plan_steps(384, 12, 3, 6, heads=6, multiple_of=8)  # 192 x12, 272 x6, 384 x6
    steps = Steps(plan, lambda w, i: nn.Identity(), dim=-1)
    costs = [float(w * w) for w in plan.block_widths()]
    drops = drop_windows(steps, costs, blocks=1)
    assert [d.size for d in drops] == [4, 2, 1]
    # every contiguous window of m_s blocks inside the step, not only its last blocks
    assert drops[0].windows == tuple(tuple(range(i, i + 4)) for i in range(9))
    assert drops[1].windows == ((12, 13), (13, 14), (14, 15), (15, 16), (16, 17))
    assert drops[2].windows == tuple((i,) for i in range(18, 24))
    macs = [d.macs for d in drops]
    assert max(macs) / min(macs) < 1.1
    assert sum(d.share for d in drops) == pytest.approx(sum(macs) / plan.cost())
    assert [d.size for d in drop_windows(steps, costs, 2)] == [8, 4, 2]
    with pytest.raises(ValueError, match='budget must be 1..6 blocks'):
        drop_windows(steps, [1.0] * 24, blocks=7)


class Count(nn.Module):
    """Adds 10**index to its input, so the output tells which blocks ran."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x + 10 ** self.index


def test_each_window_removes_exactly_its_blocks():
    """A hand-built trunk: step 1 has 4 blocks of width 2, step 2 has 2 blocks of width 4 (cost 4x)."""
    steps = Steps(StepPlan((2, 4), (4, 2)), lambda w, i: Count(i), dim=-1)
    costs = [4.0, 4.0, 4.0, 4.0, 16.0, 16.0]
    drops = drop_windows(steps, costs, blocks=1)
    assert [(d.size, d.windows) for d in drops] == [(4, ((0, 1, 2, 3),)), (1, ((4,), (5,)))]
    x = torch.zeros(1, 4)
    full = steps(x)[0, 0].item()
    assert full == 111111
    for d in drops:
        for w in d.windows:
            with dropped_blocks([steps[i] for i in w]):
                assert steps(x)[0, 0].item() == full - sum(10 ** i for i in w)


def test_block_macs_measured_on_a_steps_vit():
    model = timm.create_model('test_steps_vit', num_classes=10)
    macs = block_macs(model, model.blocks, torch.randn(2, 3, 32, 32))
    widths = model.plan.block_widths()
    assert len(macs) == len(widths) and all(m > 0 for m in macs)
    assert macs[0] < macs[-1]  # wider blocks cost more
    assert block_macs(model, model.blocks) == [float(w * w) for w in widths]


def test_find_steps_errors():
    with pytest.raises(ValueError, match='has no Steps module'):
        find_steps(timm.create_model('resnet18', num_classes=10))
    model = timm.create_model('test_steps_swin', num_classes=10)
    name, steps = find_steps(model)
    assert name == 'layers.2.blocks' and isinstance(steps, Steps)
    assert find_steps(model, 'layers.3.blocks')[0] == 'layers.3.blocks'
    with pytest.raises(ValueError, match='is not a Steps module'):
        find_steps(model, 'layers.1')


def _toy_loader(n=16):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)),
                      batch_size=8)


def test_tables_on_a_tiny_steps_vit():
    torch.manual_seed(0)
    model = timm.create_model('test_steps_vit', num_classes=10)
    loader = _toy_loader()
    rows = mask_table(model, loader, sizes=[0, 16, 64], progress=False)
    assert [r['n'] for r in rows] == [0, 16, 64]
    assert rows[0]['slow_top1'] == rows[0]['fast_top1'] and rows[0]['slow_loss'] == rows[0]['fast_loss']
    assert rows[2]['slow_top1'] == rows[2]['fast_top1']  # everything masked either way
    assert 'slow path (first n), top-1' in format_mask_table(rows, paper=True)
    with pytest.raises(ValueError, match='mask size 65 is outside 0..64'):
        mask_table(model, loader, sizes=[65], progress=False)
    assert default_mask_sizes(384) == [0, 32, 64, 96, 128, 160]

    drops = drop_step_table(model, loader, blocks=1, progress=False)
    assert [r['step'] for r in drops] == ['none', 1, 2, 3]
    assert [r['dropped'] for r in drops] == [0, 4, 2, 1]  # 32/48/64 wide, costs ~1 : 2 : 4
    assert [r['windows'] for r in drops] == [0, 1, 1, 2]  # the test model's steps hold 4, 2 and 2 blocks
    assert drops[3]['top1_min'] <= drops[3]['top1'] <= drops[3]['top1_max']
    assert len(drops[3]['per_window'].split()) == 2
    assert 'F1' in format_drop_table(drops, paper=True)
    with pytest.raises(ValueError, match='has no Steps module'):
        mask_table(timm.create_model('resnet18', num_classes=10), loader, progress=False)


def test_aggregate_gives_mean_and_std_over_models():
    t1 = [dict(n=0, top1=50.0), dict(n=8, top1=40.0)]
    t2 = [dict(n=0, top1=60.0), dict(n=8, top1=30.0)]
    rows = aggregate([t1, t2], 'n', ('top1',))
    assert rows[0]['top1'] == 55.0 and rows[0]['top1_std'] == pytest.approx(7.0711, rel=1e-4)
    assert rows[1]['top1_all'] == [40.0, 30.0] and rows[1]['models'] == 2
    assert aggregate([t1], 'n', ('top1',))[0]['top1_std'] is None
    with pytest.raises(ValueError, match='different rows'):
        aggregate([t1, t2[:1]], 'n', ('top1',))


def test_paired_differences_over_models_match_scipy():
    from scipy import stats as st

    from stepsnet.stats import holm
    mask = [[dict(n=0, slow_top1=90.0, fast_top1=90.0, slow_loss=0.3, fast_loss=0.3),
             dict(n=8, slow_top1=70.0 + k, fast_top1=88.0 - k * k, slow_loss=0.9, fast_loss=0.4 + 0.1 * k)]
            for k in range(3)]
    rows = mask_differences(mask)
    assert [(r['what'], r['metric']) for r in rows] == [('n 8: fast − slow path masked', 'top1'),
                                                        ('n 8: fast − slow path masked', 'loss')]
    ref = st.ttest_rel([88.0, 87.0, 84.0], [70.0, 71.0, 72.0])
    assert rows[0]['p'] == pytest.approx(ref.pvalue) and rows[0]['same_sign'] == 3
    assert [r['p_adj'] for r in rows] == pytest.approx(holm([r['p'] for r in rows]))
    # a verdict needs the sign-flip test too: with 3 models its p is at least 0.25
    assert rows[0]['sign_flip']['p'] == 0.25 and rows[0]['outcome'] == 'not distinguishable'
    drop = [[dict(step='none', top1=90.0, loss=0.3), dict(step=1, top1=80.0 - k, loss=0.6),
             dict(step=2, top1=88.0 + k, loss=0.35 + 0.01 * k)] for k in range(3)]
    rows = drop_differences(drop)
    assert [r['what'] for r in rows[:3]] == ['F1 dropped − none', 'F2 dropped − none', 'F2 − F1 dropped']
    assert rows[2]['mean'] == pytest.approx(np.mean([8.0, 10.0, 12.0]))
    text = format_differences(rows)
    assert 'Holm-adjusted across the 6 differences' in text and '| F2 − F1 dropped | top-1 | +10.00 ± 2.00 |' in text


def _save(path, model_name, state, kind='stepsnet-cls'):
    from stepsnet.utils import save_checkpoint
    dcfg = dict(input_size=(3, 32, 32), interpolation='bicubic', mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)
    meta = dict(model_args=dict(name=model_name, num_classes=10, img_size=32), class_names=[str(i) for i in range(10)],
                data_config=dcfg, dataset='digits')
    save_checkpoint(dict(model=state, meta=meta, config={}, progress=dict(step=1), version=FORMAT_VERSION), path, kind)


def test_classifier_from_checkpoint_and_bad_checkpoints(tmp_path):
    model = timm.create_model('test_steps_vit', num_classes=10)
    good = tmp_path / 'vit.pth'
    _save(good, 'test_steps_vit', model.state_dict())
    net, info = classifier_from_checkpoint(str(good))
    assert info['model_name'] == 'test_steps_vit' and info['data_config']['input_size'] == (3, 32, 32)
    assert torch.equal(net.state_dict()['head.weight'], model.state_dict()['head.weight'])
    with pytest.raises(ValueError, match="holds a 'test_steps_vit' model; expected 'test_steps_resnet'"):
        classifier_from_checkpoint(str(good), model='test_steps_resnet')
    wrong = tmp_path / 'wrong.pth'
    _save(wrong, 'test_steps_vit', timm.create_model('test_steps_resnet', num_classes=10).state_dict())
    with pytest.raises(CheckpointError, match='do not fit'):
        classifier_from_checkpoint(str(wrong))
    lm = tmp_path / 'lm.pth'
    _save(lm, 'test_steps_vit', model.state_dict(), kind='stepsnet-lm')
    with pytest.raises(CheckpointError, match="expected a 'stepsnet-cls' checkpoint"):
        classifier_from_checkpoint(str(lm))
    with pytest.raises(FileNotFoundError):
        classifier_from_checkpoint(str(tmp_path / 'missing.pth'))


def test_cli_mask_and_drop_step_over_several_models(tmp_path, capsys):
    from stepsnet.cli import main
    cks = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        cks.append(str(tmp_path / f'vit{seed}.pth'))
        _save(cks[-1], 'test_steps_vit', timm.create_model('test_steps_vit', num_classes=10).state_dict())
    assert main(['analyze', 'mask', '--checkpoint', *cks, '--sizes', '0', '8', '--no-progress',
                 '--csv', str(tmp_path / 'mask.csv')]) == 0
    out = capsys.readouterr().out
    assert '2 models' in out and 'fast path (last n), top-1' in out and ' ± ' in out
    assert '| n 8: fast − slow path masked | top-1 |' in out and 'Holm-adjusted across the 2 differences' in out
    assert (tmp_path / 'mask.csv').read_text().startswith('n,slow_top1,slow_loss,fast_top1,fast_loss,model')
    assert main(['analyze', 'drop-step', '--checkpoint', *cks, '--no-progress']) == 0
    assert '| F3 | 64 x2 | 1 x 2 |' in capsys.readouterr().out
    # a model without a Steps trunk, a checkpoint of another architecture, a missing file: one line each
    assert main(['analyze', 'mask', '--model', 'resnet18', '--no-progress']) == 2
    assert 'has no Steps module' in capsys.readouterr().err
    assert main(['analyze', 'drop-step', '--checkpoint', cks[0], '--model', 'test_steps_swin']) == 2
    assert "expected 'test_steps_swin'" in capsys.readouterr().err
    assert main(['analyze', 'drop-step', '--checkpoint', cks[0], str(tmp_path / 'nope.pth')]) == 2
    assert 'nope.pth' in capsys.readouterr().err
