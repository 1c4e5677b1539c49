"""Channel masking (Table 6) and step dropping (Table 7): interventions, plans, tables, checkpoints and errors."""
import pytest
import timm
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import stepsnet  # noqa: F401
from stepsnet.analysis.ablation import (
    block_macs,
    default_mask_sizes,
    drop_plan,
    drop_step_table,
    dropped_blocks,
    find_steps,
    format_drop_table,
    format_mask_table,
    load_classifier,
    mask_table,
    masked_input,
)
from stepsnet.steps import StepPlan, Steps, plan_steps

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


def test_drop_plan_equalises_cost_for_steps_deit_s():
    plan = plan_steps(384, 12, 3, 6, heads=6, multiple_of=8)  # 192 x12, 272 x6, 384 x6
    steps = Steps(plan, lambda w, i: nn.Identity(), dim=-1)
    drops = drop_plan(steps, [float(w * w) for w in plan.block_widths()], blocks=1)
    assert [len(d.blocks) for d in drops] == [4, 2, 1]
    assert drops[0].blocks == (8, 9, 10, 11) and drops[1].blocks == (16, 17) and drops[2].blocks == (23,)
    macs = [d.macs for d in drops]
    assert max(macs) / min(macs) < 1.1
    assert sum(d.share for d in drops) == pytest.approx(sum(macs) / plan.cost())
    assert [len(d.blocks) for d in drop_plan(steps, [float(w * w) for w in plan.block_widths()], 2)] == [8, 4, 2]
    with pytest.raises(ValueError, match='budget must be 1..6 blocks'):
        drop_plan(steps, [1.0] * 24, blocks=7)


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
    assert rows[0]['slow_top1'] == rows[0]['fast_top1']
    assert rows[2]['slow_top1'] == rows[2]['fast_top1']  # everything masked either way
    assert 'slow path (first n)' in format_mask_table(rows, paper=True)
    with pytest.raises(ValueError, match='mask size 65 is outside 0..64'):
        mask_table(model, loader, sizes=[65], progress=False)
    assert default_mask_sizes(384) == [0, 32, 64, 96, 128, 160]

    drops = drop_step_table(model, loader, blocks=1, progress=False)
    assert [r['step'] for r in drops] == ['none', 1, 2, 3]
    assert [r['dropped'] for r in drops] == [0, 4, 2, 1]  # 32/48/64 wide, costs ~1 : 2 : 4
    assert 'F1' in format_drop_table(drops, paper=True)
    with pytest.raises(ValueError, match='has no Steps module'):
        mask_table(timm.create_model('resnet18', num_classes=10), loader, progress=False)


def _save(path, model_name, state, kind='stepsnet-cls', **extra):
    from stepsnet.utils import save_checkpoint
    save_checkpoint(dict(model=state, model_name=model_name, num_classes=10, data_config=dict(img_size=32),
                         config=dict(model_kwargs={}), **extra), path, kind)


def test_load_classifier_and_bad_checkpoints(tmp_path):
    model = timm.create_model('test_steps_vit', num_classes=10)
    good = tmp_path / 'vit.pth'
    _save(good, 'test_steps_vit', model.state_dict())
    net, info = load_classifier(str(good))
    assert info['model_name'] == 'test_steps_vit' and info['img_size'] == 32
    assert torch.equal(net.state_dict()['head.weight'], model.state_dict()['head.weight'])
    with pytest.raises(ValueError, match="holds a 'test_steps_vit' model; expected 'test_steps_resnet'"):
        load_classifier(str(good), model='test_steps_resnet')
    wrong = tmp_path / 'wrong.pth'
    _save(wrong, 'test_steps_vit', timm.create_model('test_steps_resnet', num_classes=10).state_dict())
    with pytest.raises(ValueError, match='do not fit'):
        load_classifier(str(wrong))
    lm = tmp_path / 'lm.pth'
    _save(lm, 'test_steps_vit', model.state_dict(), kind='stepsnet-lm')
    with pytest.raises(ValueError, match="expected a 'stepsnet-cls' checkpoint"):
        load_classifier(str(lm))
    with pytest.raises(FileNotFoundError):
        load_classifier(str(tmp_path / 'missing.pth'))


def test_cli_mask_and_drop_step(tmp_path, capsys):
    from stepsnet.cli import main
    ck = tmp_path / 'vit.pth'
    _save(ck, 'test_steps_vit', timm.create_model('test_steps_vit', num_classes=10).state_dict())
    assert main(['analyze', 'mask', '--checkpoint', str(ck), '--sizes', '0', '8', '--no-progress',
                 '--csv', str(tmp_path / 'mask.csv')]) == 0
    assert 'fast path (last n)' in capsys.readouterr().out
    assert (tmp_path / 'mask.csv').read_text().startswith('n,slow_top1,fast_top1')
    assert main(['analyze', 'drop-step', '--checkpoint', str(ck), '--no-progress']) == 0
    assert '| F3 | 64 x2 |' in capsys.readouterr().out
    # a model without a Steps trunk, and a checkpoint of another architecture
    assert main(['analyze', 'mask', '--model', 'resnet18', '--no-progress']) == 2
    assert 'has no Steps module' in capsys.readouterr().err
    assert main(['analyze', 'drop-step', '--checkpoint', str(ck), '--model', 'test_steps_swin']) == 2
    assert "expected 'test_steps_swin'" in capsys.readouterr().err
