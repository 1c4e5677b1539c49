"""The planner and the Steps module: every architecture row of the paper's Tables 12-14, validation, the forward."""
import pytest
import torch
import torch.nn as nn

from stepsnet.steps import StepPlan, Steps, plan_steps, step_width

# (baseline width, depth, steps, move, heads) -> the row of the paper's Tables 12-14, width[/heads] x blocks
PAPER_ROWS = [
    # ResNet stages after their downsampling block (bottleneck widths for ResNet-50)
    ('ResNet-18 stage 3', (256, 1, 5, 1, None), '64x2, 90x1, 128x1, 181x1, 256x0'),
    ('ResNet-18 stage 4', (512, 1, 7, 1, None), '64x2, 90x1, 128x1, 181x1, 256x1, 362x1, 512x0'),
    ('ResNet-34/50 stage 3', (256, 5, 5, 3, None), '64x6, 90x3, 128x3, 181x3, 256x2'),
    ('ResNet-34/50 stage 4', (512, 2, 7, 1, None), '64x2, 90x1, 128x1, 181x1, 256x1, 362x1, 512x1'),
    # DeiT trunks
    ('DeiT-T', (192, 12, 3, 6, 3), '96/H2x12, 136/H2x6, 192/H3x6'),
    ('DeiT-S', (384, 12, 3, 6, 6), '192/H3x12, 272/H4x6, 384/H6x6'),
    ('DeiT-B', (768, 12, 3, 6, 12), '384/H6x12, 544/H8x6, 768/H12x6'),
    # Swin stages after patch merging
    ('Swin-T stage 3', (384, 6, 3, 3, 12), '192/H6x6, 272/H8x3, 384/H12x3'),
    ('Swin-S stage 3', (384, 18, 3, 3, 12), '192/H6x6, 272/H8x3, 384/H12x15'),
    ('Swin-T/S stage 4', (768, 2, 5, 2, 24), '192/H6x4, 272/H8x2, 384/H12x2, 544/H16x2, 768/H24x0'),
    ('Swin-B stage 3', (512, 18, 3, 3, 16), '256/H8x6, 360/H12x3, 512/H16x15'),
    ('Swin-B stage 4', (1024, 2, 5, 2, 32), '256/H8x4, 360/H12x2, 512/H16x2, 720/H24x2, 1024/H32x0'),
]


@pytest.mark.parametrize('name,args,expected', PAPER_ROWS, ids=[r[0] for r in PAPER_ROWS])
def test_planner_reproduces_spec_rows(name, args, expected):
    width, depth, steps, move, heads = args
    plan = plan_steps(width, depth, steps, move, heads=heads, multiple_of=None if heads is None else 8)
    assert str(plan) == expected
    assert plan.channels == width
    assert plan.num_blocks == depth + (steps - 1) * move


@pytest.mark.parametrize('name,args,expected', PAPER_ROWS, ids=[r[0] for r in PAPER_ROWS])
def test_planner_keeps_compute(name, args, expected):
    width, depth, steps, move, heads = args
    plan = plan_steps(width, depth, steps, move, heads=heads, multiple_of=None if heads is None else 8)
    # every substitution moves k blocks of cost w^2 into 2k blocks of cost (w/sqrt2)^2; only rounding differs
    assert plan.relative_cost(depth) == pytest.approx(1.0, abs=0.02)


def test_one_step_is_the_baseline():
    plan = plan_steps(384, 12, 1, 6, heads=6, multiple_of=8)
    assert plan == StepPlan((384,), (12,), (6,))


def test_step_width_rounding_rules():
    assert [step_width(512, k)[0] for k in range(7)] == [512, 362, 256, 181, 128, 90, 64]  # floored: 90, not 91
    assert step_width(1024, 1, heads=32, multiple_of=8) == (720, 24)  # 728 is nearer, but 24 heads must divide
    assert step_width(512, 1, heads=8, multiple_of=8) == (360, 6)


def test_plan_derived_quantities():
    plan = plan_steps(384, 12, 3, 6, heads=6, multiple_of=8)
    assert plan.chunks == (192, 80, 112)
    assert sum(plan.chunks) == 384
    assert plan.block_widths() == [192] * 12 + [272] * 6 + [384] * 6
    assert plan.block_heads()[:13] == [3] * 12 + [4]
    assert plan.step_of(0) == 0 and plan.step_of(12) == 1 and plan.step_of(23) == 2
    assert plan.heads_for(272) == 4
    assert plan.truncated(14) == StepPlan((192, 272, 384), (12, 2, 0), (3, 4, 6))


def test_plan_errors_name_the_value():
    with pytest.raises(ValueError, match=r'strictly increasing.*272 then 256'):
        StepPlan((192, 272, 256), (1, 1, 1))
    with pytest.raises(ValueError, match=r'depth of step 2 is -1'):
        StepPlan((64, 128), (2, -1))
    with pytest.raises(ValueError, match=r'5 heads do not divide width 272'):
        StepPlan((192, 272), (1, 1), (3, 5))
    with pytest.raises(ValueError, match=r'2 widths .* but 3 depths'):
        StepPlan((64, 128), (1, 1, 1))
    with pytest.raises(ValueError, match=r'cannot move 6 blocks out of a first step with 4'):
        plan_steps(256, 4, 3, 6)
    with pytest.raises(ValueError, match=r'5 heads do not divide the trunk width 384'):
        plan_steps(384, 12, 3, 6, heads=5, multiple_of=8)


def test_steps_rejects_plan_for_other_width():
    plan = plan_steps(256, 5, 3, 2)
    with pytest.raises(ValueError, match=r'ends at width 256, but the trunk has 384 channels'):
        Steps(plan, lambda w, i: nn.Identity(), channels=384)


class Residual(nn.Module):
    """A small residual block: x + W2 relu(W1 x) over the last axis."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


def test_forward_matches_the_definition():
    torch.manual_seed(0)
    plan = StepPlan((4, 6, 10), (2, 0, 1))
    steps = Steps(plan, lambda w, i: Residual(w), dim=-1)
    x = torch.randn(3, 5, 10)
    # y1 = F1(x1); y2 = F2([y1, x2]) with F2 empty; y3 = F3([y2, x3])
    b = list(steps)
    y = b[1](b[0](x[..., :4]))
    y = torch.cat([y, x[..., 4:6]], -1)
    y = b[2](torch.cat([y, x[..., 6:]], -1))
    torch.testing.assert_close(steps(x), y)
    assert [m.fc1.in_features for m in steps] == [4, 4, 10]


def test_identity_blocks_pass_input_through():
    plan = plan_steps(64, 3, 4, 1)
    steps = Steps(plan, lambda w, i: nn.Identity(), dim=1)
    x = torch.randn(2, 64, 5, 5)
    assert torch.equal(steps(x), x)


def test_channel_axis_one_nchw():
    torch.manual_seed(0)
    plan = StepPlan((8, 16), (1, 1))
    steps = Steps(plan, lambda w, i: nn.Conv2d(w, w, 3, padding=1), dim=1)
    x = torch.randn(2, 16, 6, 6)
    blocks = list(steps)
    expected = blocks[1](torch.cat([blocks[0](x[:, :8]), x[:, 8:]], 1))
    torch.testing.assert_close(steps(x), expected)


def test_slow_path_only_first_chunk_reaches_first_step():
    """Changing the last chunk cannot change what the first step computes (fast path skips it)."""
    seen = []

    class Probe(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = w

        def forward(self, x):
            seen.append((self.w, x.shape[-1]))
            return x

    Steps(StepPlan((2, 4, 8), (1, 1, 1)), lambda w, i: Probe(w), dim=-1)(torch.randn(1, 8))
    assert seen == [(2, 2), (4, 4), (8, 8)]


def test_make_block_receives_width_and_index():
    calls = []
    Steps(plan_steps(256, 5, 3, 2), lambda w, i: calls.append((w, i)) or nn.Identity())
    assert calls == [(128, 0), (128, 1), (128, 2), (128, 3), (181, 4), (181, 5), (256, 6), (256, 7), (256, 8)]


def test_input_channel_mismatch_is_a_value_error():
    steps = Steps(StepPlan((4, 8), (1, 1)), lambda w, i: Residual(w), dim=-1)
    with pytest.raises(ValueError, match=r'expected 8 channels on dim -1.*got input of shape \(2, 12\)'):
        steps(torch.randn(2, 12))


def test_gradients_reach_every_block():
    torch.manual_seed(0)
    steps = Steps(plan_steps(16, 2, 3, 1, multiple_of=None), lambda w, i: Residual(w), dim=-1)
    x = torch.randn(4, 16, requires_grad=True)
    steps(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in steps.parameters())
    assert x.grad.abs().sum() > 0


def test_grad_checkpointing_same_output_and_grads():
    torch.manual_seed(0)
    steps = Steps(StepPlan((4, 8), (2, 1)), lambda w, i: Residual(w), dim=-1)
    x = torch.randn(3, 8)
    out = steps(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in steps.parameters()]
    steps.zero_grad()
    steps.grad_checkpointing = True
    out2 = steps(x)
    out2.sum().backward()
    torch.testing.assert_close(out2, out)
    for g, p in zip(grads, steps.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_intermediates_are_full_width_states():
    torch.manual_seed(0)
    plan = StepPlan((4, 6, 10), (2, 1, 1))
    steps = Steps(plan, lambda w, i: Residual(w), dim=-1)
    x = torch.randn(2, 10)
    out, inter = steps.forward_intermediates(x, [0, 2, 3])
    torch.testing.assert_close(out, steps(x))
    assert [t.shape[-1] for t in inter] == [10, 10, 10]
    torch.testing.assert_close(inter[-1], out)
    # the untouched chunks ride along unchanged
    torch.testing.assert_close(inter[0][:, 4:], x[:, 4:])
    torch.testing.assert_close(inter[1][:, 6:], x[:, 6:])
    early, inter2 = steps.forward_intermediates(x, [1], stop_early=True)
    torch.testing.assert_close(early, inter2[0])
    assert early.shape[-1] == 10


def test_truncate_keeps_full_width_output():
    torch.manual_seed(0)
    plan = StepPlan((4, 6, 10), (2, 1, 1))
    steps = Steps(plan, lambda w, i: Residual(w), dim=-1)
    x = torch.randn(2, 10)
    _, inter = steps.forward_intermediates(x, [1])
    steps.truncate(2)
    assert len(steps) == 2 and steps.plan.depths == (2, 0, 0)
    torch.testing.assert_close(steps(x), inter[0])


def test_user_block_in_a_few_lines():
    """The README example: any residual block, NCHW, through the public API."""
    class MyBlock(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.conv = nn.Conv2d(width, width, 3, padding=1)
            self.norm = nn.BatchNorm2d(width)

        def forward(self, x):
            return x + torch.relu(self.norm(self.conv(x)))

    plan = plan_steps(width=64, depth=4, num_steps=3, move=2)
    trunk = Steps(plan, lambda width, index: MyBlock(width), dim=1, channels=64)
    assert str(plan) == '32x4, 45x2, 64x2'
    assert trunk(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)
    baseline_params = 4 * sum(p.numel() for p in MyBlock(64).parameters())
    params = sum(p.numel() for p in trunk.parameters())
    assert abs(params - baseline_params) / baseline_params < 0.03
