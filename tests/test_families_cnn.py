"""Tiny cases of the generic twin families of :mod:`stepsnet.models._families_cnn`.

``TINY`` maps a family name to (timm name, overrides that shrink it, input size); tests/test_generic_twins.py runs
its checks on every entry (forward and backward, the one-step twin is the baseline) and counts one real
configuration of each family on the meta device against its row of the coverage table (parity).
The tests below cover what the convolutional families add: a stage's first block kept in front of its trunk, the
paper's ResNet rule, re-parameterisable blocks, BatchNorm in training mode and ``features_only``.
"""
import pytest
import torch
from twin_cases import build_pair

from stepsnet.models.generic_twins import LeadTimmSteps, TimmSteps
from stepsnet.models.twins import build_twin, twin_plans

SHORT = dict(layers=(1, 1, 3, 2))  # a ResNet with 2 and 1 blocks after the first block of stages 3 and 4
TINY = {
    'RepViT': ('repvit_m1', dict(embed_dim=(16, 32, 64, 128), depth=(1, 1, 3, 2)), 64),
    'SHViT': ('shvit_s1', dict(embed_dim=(32, 64, 128), partial_dim=(8, 16, 32), depth=(1, 3, 2)), 64),
    'FasterNet': ('fasternet_t0', dict(embed_dim=16, depths=(1, 1, 3, 2), feature_dim=64), 64),
    'StarNet': ('starnet_s1', dict(base_dim=16, depths=(1, 1, 3, 2)), 64),
    'ResNetV2': ('resnetv2_50', dict(SHORT, stem_chs=16), 64),
    'Res2Net': ('res2net50_26w_4s', SHORT, 64),
    'SKNet': ('skresnet18', SHORT, 64),
    'ResNeSt': ('resnest14d', SHORT, 64),
    'RegNet': ('regnetx_002', {}, 64),
    'CSPNet': ('cspresnet50', {}, 64),
}


def _build(family_name, **extra):
    return build_pair(TINY, family_name, **extra)


def test_first_block_stays_in_front_of_the_trunk(one_thread):
    """A ResNet-like stage keeps its strided first block (the baseline's, under its name) and converts the rest."""
    base, twin, _ = _build('Res2Net')
    stage = twin.layer4
    first = getattr(stage, '0')
    assert isinstance(stage, LeadTimmSteps) and stage.num_lead == 1
    assert stage[0] is first and type(first) is type(base.layer4[0])
    assert first.conv1.in_channels == base.layer4[0].conv1.in_channels  # the block that widens
    n = twin.plans['layer4'].num_blocks
    assert len(stage) == 1 + n and sorted(dict(stage.named_children())) == sorted(str(i) for i in range(n + 1))
    assert n > len(base.layer4) - 1  # the trunk after it is deeper


def test_timm_loops_over_a_stage_with_a_kept_block(one_thread):
    """ResNetV2's stages run their blocks through checkpoint_seq when checkpointing: it iterates the trunk (the kept
    block, then per-block views) and computes what calling the trunk does."""
    _, twin, x = _build('ResNetV2')
    trunk = twin.stages[2].blocks
    assert isinstance(trunk, LeadTimmSteps) and len(list(trunk)) == len(trunk)
    twin.eval()
    with torch.no_grad():
        y = twin(x)
        twin.set_grad_checkpointing(True)
        assert torch.allclose(twin(x), y, atol=1e-5)


@pytest.mark.parametrize('family_name', ['ResNetV2', 'Res2Net'])
def test_resnet_like_families_follow_the_papers_rule(family_name):
    """Stages 3 / 4 after their first block: 5 / 7 steps moving 3 / 1 blocks, from stage 1's width (Table 12); the
    blocks per step are those of Steps-ResNet-50 (stepsnet.models.twins)."""
    name = {'ResNetV2': 'resnetv2_50', 'Res2Net': 'res2net50_26w_4s'}[family_name]
    plans = [p for p in twin_plans(name).values() if p.num_steps > 1]
    paper = twin_plans('resnet50')
    assert [p.depths for p in plans] == [paper['layer3'].depths, paper['layer4'].depths]
    assert [p.widths[-1] for p in plans] == [1024, 2048]


def test_repvit_twin_fuses_for_inference(one_thread):
    """RepViT re-parameterises its blocks for inference (RepVit.fuse); the twin's blocks fuse the same way."""
    _, twin, x = _build('RepViT')
    trunk = twin.stages[3].blocks
    assert isinstance(trunk, TimmSteps)

    def norms():
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in trunk.modules())

    twin.eval()
    with torch.no_grad():
        y, before = twin(x), norms()
        twin.fuse()
        assert norms() < before
        assert torch.allclose(twin(x), y, atol=1e-4)


@pytest.mark.parametrize('family_name', ['SKNet', 'Res2Net'])
def test_batchnorm_one_step_twin_trains_as_the_baseline(family_name, one_thread):
    """In training mode BatchNorm normalises with the batch's statistics and updates its running ones: with the
    baseline's weights, a one-step twin does both as the baseline does."""
    base, twin, x = _build(family_name, num_steps=1)
    twin.load_state_dict(base.state_dict())
    base.train(), twin.train()
    with torch.no_grad():
        assert torch.allclose(base(x), twin(x), atol=1e-5)
    stats = twin.state_dict()  # by name: a stage's kept first block is registered after its trunk's blocks
    for name, b in base.state_dict().items():
        if 'running' in name:
            assert torch.allclose(b, stats[name], atol=1e-6), name


@pytest.mark.parametrize('family_name', ['ResNetV2', 'StarNet', 'Res2Net'])
def test_features_only(family_name, one_thread):
    """features_only (timm's feature extractor around the twin) gives the baseline's feature shapes."""
    base, twin, x = _build(family_name, features_only=True)
    base.eval(), twin.eval()
    with torch.no_grad():
        assert [f.shape for f in twin(x)] == [f.shape for f in base(x)]


def test_a_model_without_blocks_to_convert_is_refused():
    """ResNeSt-14 has one block per stage: nothing follows the first blocks, so there is no Steps trunk to build."""
    with pytest.raises(ValueError, match='no stage that the rule converts has blocks after its first one'):
        build_twin('resnest14d', device='meta')


def test_regnet_twin_is_built_under_its_baselines_configuration(one_thread):
    """timm's RegNet builder looks its configuration up by the model's name: ``steps_regnetx_002`` is built from
    regnetx_002's, keeps its own pretrained config (no baseline weights), and converts stages s3 / s4 after their
    strided first blocks (``b1``)."""
    from stepsnet.models.twins import create_steps_model
    twin = create_steps_model('regnetx_002', num_classes=5).eval()
    assert twin.pretrained_cfg['architecture'] == 'steps_regnetx_002' and not twin.pretrained_cfg.get('hf_hub_id')
    for stage in ('s3', 's4'):
        trunk = getattr(twin, stage)
        assert isinstance(trunk, LeadTimmSteps) and trunk.num_lead == 1 and hasattr(trunk, 'b1')
    with torch.no_grad():
        assert twin(torch.randn(1, 3, 64, 64)).shape == (1, 5)
