"""Shortcut ratio (Fig. 2): hand-computed cases, trunk discovery and the ``analyze shortcut`` command."""
import math

import pytest
import timm
import torch
import torch.nn as nn

import stepsnet  # noqa: F401
from stepsnet.analysis.shortcut import (
    channel_std,
    find_trunk,
    plot_profiles,
    read_profiles_csv,
    shortcut_ratio,
    summary_table,
    write_profiles_csv,
)
from stepsnet.models.factory import deit_trunk_config
from stepsnet.steps import StepPlan, Steps, plan_steps

pytestmark = pytest.mark.usefixtures('one_thread')


class Double(nn.Module):
    """A residual block whose branch is the identity: x + x."""

    def forward(self, x):
        return x + x


class Trunked(nn.Module):
    """Identity embedding followed by a Steps trunk on the last axis."""

    def __init__(self, plan, make_block):
        super().__init__()
        self.embed = nn.Identity()
        self.blocks = Steps(plan, make_block, dim=-1)

    def forward(self, x):
        return self.blocks(self.embed(x))


def _signs(batch, tokens, channels):
    # +1 / -1 alternating along channels: every chunk of even width has mean 0 and std 1 at every position
    x = torch.ones(batch, tokens, channels)
    x[..., 1::2] = -1
    return x


def test_identity_blocks_give_ratio_one():
    plan = StepPlan((4, 8, 12), (2, 1, 3))
    model = Trunked(plan, lambda w, i: nn.Identity())
    p = shortcut_ratio(model, torch.randn(3, 5, 12))
    assert p.num_blocks == 6 and len(p.rows) == 7
    assert p.trunk == 'blocks' and p.chunks == (4, 4, 4)
    for r in p.rows:
        assert r['gamma'] == pytest.approx(1.0)
        assert r['gamma_processed'] == pytest.approx(1.0)
        assert all(r[f'gamma_chunk_{i}'] == pytest.approx(1.0) for i in (1, 2, 3))
    assert [r['depth'] for r in p.rows] == pytest.approx([i / 6 for i in range(7)])


def test_doubling_blocks_match_hand_computation():
    # two steps: 4 channels x1 block, then 12 channels x1 block; every block doubles what it sees
    plan = StepPlan((4, 12), (1, 1))
    model = Trunked(plan, lambda w, i: Double())
    p = shortcut_ratio(model, _signs(2, 3, 12))
    after1, after2 = p.rows[1], p.rows[2]
    # after block 1: the first 4 channels are +-2, the other 8 are +-1; per-position mean is 0
    assert after1['gamma'] == pytest.approx(1 / math.sqrt((4 * 4 + 8 * 1) / 12))
    assert after1['gamma_processed'] == pytest.approx(0.5)
    assert after1['gamma_chunk_1'] == pytest.approx(0.5) and after1['gamma_chunk_2'] == pytest.approx(1.0)
    assert after1['width'] == 4 and after1['step'] == 1
    # after block 2 (the whole width): +-4 and +-2
    assert after2['gamma'] == pytest.approx(1 / math.sqrt((4 * 16 + 8 * 4) / 12))
    assert after2['gamma_processed'] == pytest.approx(after2['gamma'])
    assert after2['gamma_chunk_1'] == pytest.approx(0.25) and after2['gamma_chunk_2'] == pytest.approx(0.5)
    # a plain residual trunk of doubling blocks: gamma_l = 2 ** -l
    plain = shortcut_ratio(Trunked(StepPlan((12,), (3,)), lambda w, i: Double()), torch.randn(2, 3, 12))
    assert [r['gamma'] for r in plain.rows] == pytest.approx([1, 0.5, 0.25, 0.125])
    assert plain.ratio_at(0.5) == pytest.approx(0.5 * (0.5 + 0.25))


def test_channel_std_reductions():
    x = _signs(1, 2, 6) * 3
    assert channel_std(x, -1, 'token') == pytest.approx(3.0)
    assert channel_std(x, -1, 'global') == pytest.approx(3.0)
    y = torch.stack([torch.zeros(4), torch.full((4,), 2.0)])[None]  # two positions, constant over channels
    assert channel_std(y, -1, 'token') == pytest.approx(0.0)
    assert channel_std(y, -1, 'global') == pytest.approx(1.0)
    with pytest.raises(ValueError, match='reduction'):
        channel_std(x, -1, 'median')


def test_zero_init_resnet_blocks_keep_the_shortcut():
    # timm zero-initialises the last norm of every residual branch: at init each block is the identity
    model = timm.create_model('test_steps_resnet', num_classes=10)
    p = shortcut_ratio(model, torch.randn(2, 3, 32, 32))
    assert p.trunk.startswith('layer') and len(p.chunks) > 1
    assert all(r['gamma'] == pytest.approx(1.0, abs=1e-6) for r in p.rows)


@pytest.mark.parametrize('name', ['test_steps_vit', 'test_steps_swin'])
def test_real_steps_models(name):
    model = timm.create_model(name, num_classes=10)
    size = model.pretrained_cfg['input_size'][-1]
    p = shortcut_ratio(model, torch.randn(2, 3, size, size))
    assert p.num_blocks == len(find_trunk(model).blocks) and len(p.rows) == p.num_blocks + 1
    assert all(0 < r['gamma'] <= 1.5 for r in p.rows)
    assert model.training  # mode restored


def test_find_trunk_on_baselines_and_errors():
    vit = timm.create_model('vit_tiny_patch16_224', depth=3, num_classes=10)
    t = find_trunk(vit)
    assert t.name == 'blocks' and len(t.blocks) == 3 and t.steps is None
    resnet = timm.create_model('resnet18', num_classes=10)
    t = find_trunk(resnet, 'layer3')
    assert t.name == 'layer3[1:]' and t.dim == 1 and len(t.blocks) == 1
    with pytest.raises(ValueError, match='not a module'):
        find_trunk(vit, 'nope')
    with pytest.raises(ValueError, match='neither a Steps trunk'):
        find_trunk(vit, 'patch_embed')
    with pytest.raises(ValueError, match='no Steps module and no sequence'):
        find_trunk(nn.Sequential(nn.Linear(3, 3)))


def test_deit_trunk_configs_for_both_pairings():
    name, kw = deit_trunk_config(96, 'residual')
    assert kw['depth'] == 96 and kw['num_steps'] == 1
    name, kw = deit_trunk_config(96, 'steps', pairing='blocks')  # the same blocks: Fig. 2 and 6
    plan = plan_steps(kw['embed_dim'], kw['depth'], kw['num_steps'], kw['steps_move'], heads=kw['num_heads'],
                      multiple_of=8)
    assert str(plan) == '192/H3x48, 272/H4x24, 384/H6x24'
    name, kw = deit_trunk_config(8, 'steps', width=64, heads=4, img_size=32, patch_size=8, pairing='blocks')
    model = timm.create_model(name, num_classes=10, **kw)
    assert str(model.plan) == '32/H2x4, 48/H2x2, 64/H4x2' and len(model.blocks) == 8
    # the Table 1 twin of an 8-block residual trunk: its parameters and FLOPs, twice its blocks
    name, kw = deit_trunk_config(8, 'steps', width=80, heads=4, img_size=32, patch_size=8, pairing='compute')
    twin = timm.create_model(name, num_classes=10, **kw)
    name, kw = deit_trunk_config(8, 'residual', width=80, heads=4, img_size=32, patch_size=8)
    residual = timm.create_model(name, num_classes=10, **kw)
    assert str(twin.plan) == '40/H2x8, 56/H2x4, 80/H4x4' and len(twin.blocks) == 16 and len(residual.blocks) == 8
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(twin) / count(residual) - 1) < 0.001
    with pytest.raises(ValueError, match='multiple of 4'):
        deit_trunk_config(10, 'steps', pairing='blocks')
    with pytest.raises(ValueError, match='expected an even L'):
        deit_trunk_config(7, 'steps', pairing='compute')
    with pytest.raises(ValueError, match='kind'):
        deit_trunk_config(8, 'dense')
    with pytest.raises(ValueError, match='pairing must be one of'):
        deit_trunk_config(8, 'steps', pairing='flops')


def test_csv_plot_roundtrip(tmp_path):
    model = Trunked(StepPlan((4, 12), (1, 1)), lambda w, i: Double())
    profiles = [shortcut_ratio(model, _signs(1, 2, 12), label='steps')]
    csv_path, png_path = tmp_path / 'r.csv', tmp_path / 'r.png'
    write_profiles_csv(profiles, str(csv_path))
    plot_profiles(profiles, str(png_path))
    back = read_profiles_csv(str(csv_path))
    assert back[0].label == 'steps'
    assert back[0].rows[2]['gamma'] == pytest.approx(profiles[0].rows[2]['gamma'], rel=1e-5)
    assert png_path.stat().st_size > 1000
    assert '| steps | blocks | 2 |' in summary_table(profiles)


def test_cli_shortcut(tmp_path, capsys):
    from stepsnet.cli import main
    rc = main(['analyze', 'shortcut', '--model', 'test_steps_vit', 'test_steps_resnet', '--deit-blocks', '4',
               '--width', '64', '--heads', '4', '--img-size', '32', '--patch-size', '8', '--dataset', 'digits',
               '--batch-size', '4', '--out-dir', str(tmp_path), '--no-progress'])
    assert rc == 0
    out = capsys.readouterr().out
    assert 'test_steps_vit (init)' in out and 'Steps-DeiT 4 blocks' in out
    assert (tmp_path / 'shortcut_ratio.csv').exists() and (tmp_path / 'shortcut_ratio.png').exists()
    labels = {p.label for p in read_profiles_csv(str(tmp_path / 'shortcut_ratio.csv'))}
    assert len(labels) == 4
    assert main(['analyze', 'shortcut', '--out-dir', str(tmp_path)]) == 2
