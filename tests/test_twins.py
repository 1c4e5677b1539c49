"""Steps twins of timm models: the family rules reproduce the paper's models, stay at parity, and build any config."""
import pathlib
import sys

import pytest
import timm
import torch

import stepsnet
from stepsnet.analysis.complexity import MODEL_PAIRS, count_macs, count_params
from stepsnet.models.twins import (
    FAMILIES,
    TWIN_BASELINES,
    baseline_args,
    build_twin,
    create_steps_model,
    twin_args,
    twin_plans,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
from update_twin_table import BEGIN, END, render  # noqa: E402

# Twins outside the parity bounds (params within 0.5%, FLOPs within 3% of the baseline), and why; docs/models.md says
# the same. The tests below check that each misses its bound for the stated reason and that every other twin is in.
PARAMS_OVER = {
    # narrow ConvNeXts: every added block brings ~58 parameters per channel (depthwise kernel, biases, norm, layer
    # scale) that the substitution does not pay for, and widths in multiples of 8 round up at <= 192 channels
    'convnext_atto', 'convnext_femto', 'convnext_pico',
}
FLOPS_OVER = {
    # attention matmuls cost 2 N^2 C per block, linear in the width: the extra narrow blocks add them; at 192 wide
    # (DeiT-T, as the paper's own Steps-DeiT-T) or 577 tokens (384 px) that is more than 3% of the model
    'vit_tiny_patch16_224', 'deit_tiny_patch16_224', 'deit_base_patch16_384',
}
FAMILY_MODULES = ('resnet', 'vision_transformer', 'deit', 'swin_transformer', 'convnext')


@pytest.fixture(scope='module')
def twin_rows():
    from stepsnet.analysis.complexity import twin_table
    return {r.baseline: r for r in twin_table()}


def _meta_signature(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize('steps_name,baseline', MODEL_PAIRS)
def test_rule_reproduces_the_paper_models(steps_name, baseline):
    """Same plans, same parameter names and shapes as the registered entrypoint."""
    paper = timm.create_model(steps_name, device='meta')
    twin = build_twin(baseline, device='meta')
    plans = paper.plans if hasattr(paper, 'plans') else {'blocks': paper.plan}
    assert {k: str(p) for k, p in plans.items()} == {k: str(p) for k, p in twin_plans(baseline).items()}
    assert _meta_signature(twin) == _meta_signature(paper)
    assert stepsnet.register_twin(baseline) == steps_name  # the paper's name, not a second registration


def test_table_covers_40_baselines_of_all_four_families():
    assert len(TWIN_BASELINES) >= 40 and len(set(TWIN_BASELINES)) == len(TWIN_BASELINES)
    families = [baseline_args(n)[0].name for n in TWIN_BASELINES]
    assert {f: families.count(f) for f in sorted(set(families))} == {
        'ConvNeXt': 10, 'ResNet': 14, 'Swin': 6, 'ViT': 14}


def test_twin_table_in_docs_is_current(twin_rows):
    docs = (ROOT / 'docs' / 'models.md').read_text()
    assert BEGIN in docs and END in docs
    current = docs.split(BEGIN, 1)[1].split(END, 1)[0]
    table = render([twin_rows[n] for n in TWIN_BASELINES])  # what the script writes
    assert current == '\n' + table, 'docs/models.md twin table is stale: run `python scripts/update_twin_table.py`'


@pytest.mark.parametrize('name', TWIN_BASELINES)
def test_twin_parity(name, twin_rows):
    r = twin_rows[name]
    assert r.blocks[1] > r.blocks[0]  # deeper at the same cost
    params_ok, flops_ok = abs(r.params_delta) < 0.005, abs(r.macs_delta) < 0.03
    assert params_ok == (name not in PARAMS_OVER), f'params {100 * r.params_delta:+.2f}%'
    assert flops_ok == (name not in FLOPS_OVER), f'FLOPs {100 * r.macs_delta:+.2f}%'


@pytest.mark.parametrize('name', sorted(FLOPS_OVER))
def test_vit_flops_surplus_is_attention(name, twin_rows):
    """Without the attention matmuls (2 N^2 C per block) the twin is at FLOPs parity."""
    r = twin_rows[name]
    plan = twin_plans(name)['blocks']
    args = baseline_args(name)[1]
    n = (timm.get_pretrained_cfg(name).input_size[-1] // args['patch_size']) ** 2 + 1  # patches + class token
    surplus = 2 * n * n * (plan.cost(lambda w: w) - args['depth'] * plan.channels)
    assert abs(r.macs[1] - surplus - r.macs[0]) / r.macs[0] < 0.005


@pytest.mark.parametrize('name', sorted(PARAMS_OVER))
def test_convnext_params_surplus_is_per_block(name, twin_rows):
    """The MLP weights (quadratic in the width) are at parity; the surplus is what every block has per channel."""
    def mlp_weights(model):
        return sum(p.numel() for n, p in model.named_parameters() if n.endswith(('fc1.weight', 'fc2.weight')))
    base, twin = timm.create_model(name, device='meta'), build_twin(name, device='meta')
    assert abs(mlp_weights(twin) - mlp_weights(base)) / count_params(base) < 0.005
    assert twin_rows[name].params_delta < 0.01


def test_rule_never_asks_for_more_blocks_than_a_stage_has():
    """Every timm configuration of the four families gets a rule that the planner accepts (move <= blocks)."""
    checked = 0
    for module in FAMILY_MODULES:
        for name in timm.list_models(module=module):
            try:
                family, args = twin_args(name)
            except ValueError as e:  # distilled ViTs and pruned ResNets are refused with a reason
                assert 'distilled' in str(e) or 'pruned' in str(e), str(e)
                continue
            steps, moves = args['num_steps'], args['steps_move']
            if family.name == 'ViT':
                assert steps == 3 and 1 <= moves <= args['depth'], name
            else:
                depths = [n - 1 for n in args['layers']] if family.name == 'ResNet' else list(args['depths'])
                for s, k, d in zip(steps, moves, depths):
                    assert (s == 1 and k == 0) or (s > 1 and 1 <= k <= d), (name, steps, moves, depths)
            checked += 1
    assert checked > 250


def test_create_steps_model_registers_a_timm_model(one_thread):
    torch.manual_seed(0)
    m = create_steps_model('resnet26', num_classes=5).eval()
    assert 'steps_resnet26' in timm.list_models('steps_resnet26')
    assert m.pretrained_cfg['architecture'] == 'steps_resnet26'
    assert m.pretrained_cfg['paper_ids'] == 'arXiv:2511.14329'
    assert str(m.plans['layer3']) == '64x2, 90x1, 128x1, 181x1, 256x0'
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    f = timm.create_model('steps_resnet26', features_only=True, device='meta')
    assert f.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_user_overrides_steps_and_moves():
    plans = twin_plans('resnet101', num_steps=(1, 1, 3, 7), steps_move=(0, 0, 8, 1))
    assert str(plans['layer3']) == '128x16, 181x8, 256x14'
    assert str(twin_plans('vit_large_patch16_224', steps_move=6)['blocks']) == '512/H8x12, 720/H12x6, 1024/H16x18'
    m = create_steps_model('convnext_atto', steps_move=(0, 0, 1, 1), device='meta')
    assert str(m.plans['stages.2']) == '80x2, 112x1, 160x5'
    with pytest.raises(ValueError, match=r'stage 4 .*cannot move 4 blocks out of a first step with 2'):
        twin_plans('resnet50', steps_move=(0, 0, 3, 4))


@pytest.mark.parametrize('name', ['resnext50_32x4d', 'deit_base_patch16_384', 'swin_tiny_patch4_window7_224',
                                  'convnext_atto'])
def test_table_counts_equal_a_full_count(name, twin_rows):
    """The table counts the twin's FLOPs from the baseline's plus one block per trunk width; a full count agrees."""
    r = twin_rows[name]
    twin = build_twin(name, device='meta')
    assert r.macs[1] == count_macs(twin, r.input_size)
    assert r.params[1] == count_params(twin)


def test_meta_counts_equal_real_counts():
    torch.manual_seed(0)
    real, meta = build_twin('convnext_atto'), build_twin('convnext_atto', device='meta')
    assert count_params(real) == count_params(meta)
    assert count_macs(real, (3, 64, 64)) == count_macs(meta, (3, 64, 64))


@pytest.mark.parametrize('name,match', [
    ('efficientnet_b0', 'Steps twins exist for those four families'),
    ('deit_small_distilled_patch16_224', 'distilled'),
    ('ecaresnet50d_pruned', 'pruned'),
    ('steps_resnet50', 'is a Steps model already'),
    ('no_such_model', 'not a timm model'),
])
def test_twin_of_an_unsupported_model_is_a_clear_error(name, match):
    with pytest.raises(ValueError, match=match):
        create_steps_model(name)


def test_every_family_is_reachable():
    assert sorted(f.name for f in FAMILIES) == ['ConvNeXt', 'ResNet', 'Swin', 'ViT']
    for name, family in [('resnext50_32x4d', 'ResNet'), ('deit3_small_patch16_224', 'ViT'),
                         ('swin_large_patch4_window12_384', 'Swin'), ('convnextv2_nano', 'ConvNeXt')]:
        assert baseline_args(name)[0].name == family


def test_count_flops_is_the_deprecated_name_of_count_macs():
    from stepsnet.analysis import complexity
    model = timm.create_model('test_steps_resnet')
    with pytest.warns(DeprecationWarning, match='count_macs'):
        old = complexity.count_flops(model, (3, 32, 32))
    assert old == count_macs(model, (3, 32, 32))
