"""Steps twins of the generic families (stepsnet.models.generic_twins) on tiny configurations.

Each family's real configuration is read from its timm entrypoint and shrunk (width, depth, image size), then built
twice with the family's own timm builder: as the baseline, and as the twin. The full parity sweep over every timm
configuration is scripts/update_twin_coverage.py; here one real configuration per family is counted again on the
meta device against its row of that table (docs/models.md).
"""
import pytest
import test_families_cnn
import test_families_hierarchical
import test_families_isotropic
import timm
import torch
from twin_cases import build_pair, check_forward_intermediates

from stepsnet.analysis.complexity import count_params
from stepsnet.models.generic_families import GENERIC_FAMILIES, family_configs, family_of
from stepsnet.models.generic_twins import TimmSteps
from stepsnet.models.twins import build_twin, create_steps_model

ISO = dict(img_size=32, patch_size=8, embed_dim=64)
STAGED = dict(depths=(1, 1, 3, 2), dims=(16, 32, 64, 128))
# one tiny configuration per family: (timm name, overrides, input size)
TINY = {
    'EVA': ('eva02_tiny_patch14_224', dict(ISO, embed_dim=128, depth=4, num_heads=4), 32),  # rotary: head size 32
    'BEiT': ('beit_base_patch16_224', dict(ISO, depth=4, num_heads=4), 32),
    'CaiT': ('cait_xxs24_224', dict(ISO, depth=4, num_heads=4, depth_token_only=1), 32),
    'MLP-Mixer': ('resmlp_12_224', dict(ISO, num_blocks=4), 32),
    'MetaFormer': ('caformer_s18', dict(STAGED, dims=(32, 64, 64, 128)), 64),
    'MambaOut': ('mambaout_femto', STAGED, 64),
    'InceptionNeXt': ('inception_next_tiny', STAGED, 64),
}
for _more in (test_families_hierarchical, test_families_isotropic, test_families_cnn):
    TINY.update(_more.TINY)


def _build(family_name: str, **extra):
    """(baseline, twin, input) of the family's tiny configuration, both with the family's timm builder."""
    return build_pair(TINY, family_name, **extra)


def test_every_family_has_a_tiny_case():
    assert sorted(TINY) == sorted(f.name for f in GENERIC_FAMILIES)


@pytest.mark.parametrize('family_name', sorted(TINY))
def test_twin_runs_forward_and_backward(family_name, one_thread):
    base, twin, x = _build(family_name, num_classes=5)
    assert any(p.num_steps > 1 for p in twin.plans.values()), twin.plans
    assert isinstance(twin, type(base))
    twin.train()
    twin(x).sum().backward()
    missing = [n for n, p in twin.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize('family_name', sorted(TINY))
def test_one_step_twin_is_the_baseline(family_name, one_thread):
    """num_steps=1 rebuilds every block at its own width: with the baseline's weights it is the baseline."""
    base, twin, x = _build(family_name, num_steps=1)
    assert all(p.num_steps == 1 for p in twin.plans.values())
    twin.load_state_dict(base.state_dict())
    base.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(base(x), twin(x))


@pytest.mark.parametrize('family_name', ['EVA', 'CaiT', 'MetaFormer'])
def test_timm_api(family_name, one_thread):
    """forward_intermediates (timm's own loop, through the trunk's views) and reset_classifier."""
    _, twin, x = _build(family_name)
    feats = check_forward_intermediates(twin, x)
    trunk = [m for m in twin.modules() if isinstance(m, TimmSteps)][-1]
    assert feats[-1].shape[1] == trunk.channels
    twin.reset_classifier(7)
    assert twin(x).shape == (2, 7)


def test_features_only_and_pruning(one_thread):
    _, twin, x = _build('MetaFormer', features_only=True)
    assert [f.shape[1] for f in twin(x)] == [32, 64, 64, 128]
    _, vit, x = _build('EVA')
    n = len(vit.blocks)
    assert n == sum(vit.plans['blocks'].depths) and len(vit.feature_info) == n
    vit.prune_intermediate_layers([n - 3])
    assert isinstance(vit.blocks, TimmSteps) and len(vit.blocks) == n - 2
    with torch.no_grad():
        assert vit.forward_intermediates(x, intermediates_only=True)[0].shape[1] == vit.embed_dim


def test_views_compute_the_trunk(one_thread):
    """Looping over the trunk (as timm does) computes what calling it does."""
    _, twin, _ = _build('BEiT')
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        y = x
        for blk in twin.blocks:
            y = blk(y, shared_rel_pos_bias=None)
        assert torch.allclose(y, twin.blocks(x), atol=1e-6)


def test_create_steps_model_registers_a_generic_twin(one_thread):
    name, tiny, size = TINY['CaiT']
    m = create_steps_model(name, num_classes=3, **tiny).eval()
    assert timm.is_model(f'steps_{name}')
    assert m(torch.randn(1, 3, size, size)).shape == (1, 3)


def test_widths_that_miss_the_parameters_round_to_a_neighbour():
    """XCiT-T's blocks carry per-block extras (a local patch conv, head temperatures, layer scales) beyond the width^2
    cost the rule assumes: the nearest widths give +0.55% parameters, and the neighbouring multiples bring the twin
    within 0.5%, with the rule's block counts; a twin within parity keeps the nearest widths."""
    name = 'xcit_tiny_12_p16_224'
    base = timm.create_model(name, device='meta')
    nearest = build_twin(name, device='meta', balance_widths=False)
    balanced = build_twin(name, device='meta')
    assert count_params(nearest) / count_params(base) - 1 > 0.005
    assert abs(count_params(balanced) / count_params(base) - 1) <= 0.005
    plan, rule = balanced.plans['blocks'], nearest.plans['blocks']
    assert plan.depths == rule.depths and plan.widths[-1] == rule.widths[-1] and plan.widths != rule.widths
    assert all(w % 8 == 0 and abs(w - r) <= 16 for w, r in zip(plan.widths, rule.widths))
    kept = build_twin('beit_base_patch16_224', device='meta')  # within parity with the nearest widths
    assert kept.plans == build_twin('beit_base_patch16_224', device='meta', balance_widths=False).plans


def test_eva_steps_have_their_own_rotary_tables(one_thread):
    """Rotary EVA: heads by the ViT rule, so the middle step has 44 channels per head where the model has 32; that
    step gets its own rotary table (no parameters, nothing saved), also at another input size and in a copy."""
    import copy

    from twin_cases import check_forward_intermediates
    name, tiny, size = TINY['EVA']
    twin = create_steps_model(name, **tiny).eval()
    plan = twin.plans['blocks']
    assert [w // h for w, h in zip(plan.widths, plan.heads)] == [32, 44, 32]
    assert list(twin.step_ropes) == ['step1'] and not list(twin.step_ropes.parameters())
    assert not any(k.startswith('step_ropes') for k in twin.state_dict())
    x = torch.randn(2, 3, size, size)
    check_forward_intermediates(twin, x)
    with torch.no_grad():
        assert torch.allclose(copy.deepcopy(twin)(x), twin(x), atol=1e-6)
    dynamic = create_steps_model(name, **tiny, dynamic_img_size=True).eval()
    with torch.no_grad():
        assert dynamic(torch.randn(1, 3, size + 16, size)).shape == twin(x[:1]).shape
    assert dynamic.patch_embed.stepsnet_grid == ((size + 16) // 8, size // 8)


def test_refusal_names_the_reason():
    mixed = [n for n in family_configs(family_of('eva02_tiny_patch14_224')) if 'rope_mixed' in n]
    assert mixed
    with pytest.raises(ValueError, match='mixed-mode rotary'):
        build_twin(mixed[0], device='meta')
    with pytest.raises(ValueError, match='expected one per trunk'):
        build_twin('mambaout_femto', device='meta', num_steps=(1, 3))


def test_coverage_table_lists_every_configuration_of_every_family():
    """docs/models.md's coverage table (scripts/update_twin_coverage.py) is not stale: it has one row per timm
    configuration of every generic family, in the families' order, and its summary counts its rows."""
    import os
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'models.md')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    block = text[text.index('<!-- twin-coverage:begin -->'):text.index('<!-- twin-coverage:end -->')]
    rows = re.findall(r'^\| ([^|]+) \| `([^`]+)` \| (within parity|twinned|refused) \|', block, flags=re.M)
    listed = [(family.strip(), name) for family, name, _ in rows]
    expected = [(family.name, name) for family in GENERIC_FAMILIES for name in family_configs(family)]
    assert listed == expected, 'docs/models.md is stale: python scripts/update_twin_coverage.py'
    total = re.search(r'^\| \*\*all\*\* \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|', block, flags=re.M)
    statuses = [s for _, _, s in rows]
    assert [int(g) for g in total.groups()] == [len(rows), len(rows) - statuses.count('refused'),
                                                statuses.count('within parity'), statuses.count('refused')]


def _coverage_rows():
    """docs/models.md's per-configuration rows, by family: {family: [(name, row markdown), ...]}."""
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'models.md')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    block = text[text.index('<!-- twin-coverage:begin -->'):text.index('<!-- twin-coverage:end -->')]
    rows = {}
    for line in block.splitlines():
        cells = line.split(' | ')
        if len(cells) > 3 and cells[1].startswith('`') and cells[2] in ('within parity', 'twinned'):
            rows.setdefault(cells[0].lstrip('| '), []).append((cells[1].strip('`'), line))
    return rows


LONG_PARITY = ('Sequencer',)  # about a minute on 2 cores: marked parity_long


@pytest.mark.parametrize('family', [pytest.param(f.name, marks=[pytest.mark.parity_long] * (f.name in LONG_PARITY))
                                    for f in GENERIC_FAMILIES])
def test_a_real_configuration_of_each_family_has_the_parity_its_table_row_states(family):
    """Per family, the table's first configuration within parity (the first twinned one where none is) is built at
    its real size on the meta device and counted again: status, Δ params and Δ FLOPs are the row's."""
    from stepsnet.analysis.twin_coverage import coverage_row, row_markdown
    rows = _coverage_rows()[family]
    name, line = next(((n, r) for n, r in rows if '| within parity |' in r), rows[0])
    assert row_markdown(coverage_row(family, name)) == line
