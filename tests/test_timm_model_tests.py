"""benchmarks/timm_model_tests.py on a small stand-in for timm's source: a tree (or its sdist) whose
``tests/test_models.py`` parametrizes trivial tests over ``timm.list_models(...)``. Only the items of Steps models are
kept, a known exclusion runs as an expected failure (and fails once it passes), the functions that select no Steps
model are listed with their reason, the summary goes to ``--out`` and the exit status is pytest's; a source that is
not timm's, or not the installed version, is refused with what was wrong."""
import importlib.util
import json
import pathlib
import re
import sys
import tarfile

import pytest
import timm

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'timm_model_tests.py'

# the stand-in for timm's tests/test_models.py: like timm's, it lists its models when it is imported
FAKE_TESTS = '''
import pytest
from timm import list_models

BROKEN = {broken}


@pytest.mark.parametrize('model_name', list_models(['test_steps_resnet', 'test_steps_vit', 'resnet18']))
def test_model_forward(model_name):
    assert not (BROKEN and model_name == 'test_steps_resnet'), 'broken forward'


# test_steps_vit is a known exclusion of this function: it fails there, unless BROKEN (then the exclusion is stale)
@pytest.mark.parametrize('model_name', list_models(['test_steps_resnet', 'test_steps_vit']))
def test_model_default_cfgs(model_name):
    assert BROKEN or model_name != 'test_steps_vit', 'unpooled features are not NCHW'


@pytest.mark.parametrize('model_name', list_models('test_steps_resnet*'))
def test_model_backward(model_name):
    pytest.skip('no backward here')


# selects by timm module and timm name, like timm's FEAT_INTER_FILTERS: no Steps model unless --as-timm-family
@pytest.mark.parametrize('model_name', list_models('test_resnet*', module='resnet'))
def test_model_forward_intermediates(model_name):
    assert model_name


@pytest.mark.parametrize('model_name', list_models('resnet18'))
def test_model_inference(model_name):
    assert model_name


def test_layer():
    pass
'''


def _script():
    """benchmarks/timm_model_tests.py as a module (its ``main``)."""
    spec = importlib.util.spec_from_file_location('timm_model_tests_script', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root, version=timm.__version__, broken=False, tests=True):
    """A timm-like source tree: pyproject.toml, timm/version.py (unless ``version`` is None), tests/test_models.py."""
    (root / 'timm').mkdir(parents=True)
    (root / 'pyproject.toml').write_text('[tool.pytest.ini_options]\nmarkers = ["base: timm\'s marker"]\n')
    if version is not None:
        (root / 'timm' / 'version.py').write_text(f"__version__ = '{version}'\n")
    if tests:
        (root / 'tests').mkdir()
        (root / 'tests' / 'test_models.py').write_text(FAKE_TESTS.format(broken=broken))
    return root


@pytest.fixture(autouse=True)
def fresh_test_module():
    """Each run imports its own stand-in: pytest keeps an imported test file in ``sys.modules`` under its name below
    the rootdir (``tests.test_models`` in every tree) and would give the next run the first tree's module."""
    names = ('tests', 'tests.test_models')
    saved = {name: sys.modules.pop(name, None) for name in names}
    yield
    for name in names:
        sys.modules.pop(name, None)
        if saved[name] is not None:
            sys.modules[name] = saved[name]


def _run(src, out, *args):
    code = _script().main(['--timm-src', str(src), '--out', str(out), *args])
    return code, out


def test_keeps_the_steps_items_and_marks_the_known_exclusion(tmp_path):
    code, out = _run(_tree(tmp_path / 'timm'), tmp_path / 'out')
    assert code == 0  # pytest's status: every kept item passed, was skipped or failed as expected
    data = json.loads((out / 'timm_model_tests.json').read_text())
    assert sorted((r['test'], r['model'], r['outcome']) for r in data['items']) == [
        ('test_model_backward', 'test_steps_resnet', 'skipped'),
        ('test_model_backward', 'test_steps_resnet_bottleneck', 'skipped'),
        ('test_model_default_cfgs', 'test_steps_resnet', 'passed'),
        ('test_model_default_cfgs', 'test_steps_vit', 'xfailed'),  # the known exclusion
        ('test_model_forward', 'test_steps_resnet', 'passed'),
        ('test_model_forward', 'test_steps_vit', 'passed')]  # resnet18 (timm's) dropped
    assert data['totals'] == dict(collected=6, passed=3, skipped=2, xfailed=1)
    assert data['per_test']['test_model_default_cfgs'] == dict(collected=2, passed=1, xfailed=1)
    assert [r['test'] for r in data['known_exclusions']] == ['test_model_default_cfgs']
    assert {r['message'] for r in data['items'] if r['outcome'] == 'skipped'} == {'no backward here'}
    script = _script()
    assert data['not_selected'] == {
        'test_model_forward_intermediates': script.NOT_SELECTED['test_model_forward_intermediates'],
        'test_model_inference': script.NOT_SELECTED['test_model_inference'],
        'test_layer': 'a fixed list of timm models (or none): not a per-model test'}
    assert (data['timm'], data['pytest_exit'], data['as_timm_family']) == (timm.__version__, 0, False)
    md = (out / 'timm_model_tests.md').read_text()
    assert 'Collected 6: 3 passed, 0 failed, 0 error, 2 skipped, 1 xfailed.' in md
    assert '| `test_model_default_cfgs` | 2 | 1 | 0 | 0 | 0 | 1 |' in md
    assert '| `test_steps_vit` | pass | xfail |  |' in md
    assert '* `test_model_forward_intermediates`: selects models by the timm module' in md
    assert '1 more test functions test a fixed list' in md and 'Failures and skips' in md


def test_a_failure_and_a_stale_exclusion_fail_the_run(tmp_path):
    code, out = _run(_tree(tmp_path / 'timm', broken=True), tmp_path / 'out')
    assert code == pytest.ExitCode.TESTS_FAILED
    data = json.loads((out / 'timm_model_tests.json').read_text())
    failed = {(r['test'], r['model']): r['message'] for r in data['items'] if r['outcome'] == 'failed'}
    assert set(failed) == {('test_model_forward', 'test_steps_resnet'), ('test_model_default_cfgs', 'test_steps_vit')}
    assert 'broken forward' in failed['test_model_forward', 'test_steps_resnet']
    assert data['totals']['failed'] == 2 and 'xfailed' not in data['totals'] and data['pytest_exit'] == 1
    md = (out / 'timm_model_tests.md').read_text()
    assert '`test_model_forward[test_steps_resnet]`: failed: ' in md
    assert '`test_model_default_cfgs[test_steps_vit]`: failed: [XPASS(strict)] known exclusion: ' in md


def test_sdist_as_timm_family(tmp_path):
    """The sdist (``timm-<version>/`` inside) is unpacked; --as-timm-family selects the Steps ResNets where timm's
    module and name filters select timm's test_resnet, and writes the _family files."""
    tree = _tree(tmp_path / 'tree')
    (tree / 'PKG-INFO').write_text(f'Metadata-Version: 2.4\nName: timm\nVersion: {timm.__version__}\n')
    (tree / 'timm' / 'version.py').unlink()  # the version comes from PKG-INFO
    sdist = tmp_path / f'timm-{timm.__version__}.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        tar.add(tree, arcname=f'timm-{timm.__version__}')
    # only the tiny models: a twin another test registered in this process (stepsnet.models.twins) has no family
    code, out = _run(sdist, tmp_path / 'out', '--as-timm-family', '--models', 'test_steps_*',
                     '--only', 'test_model_forward_intermediates')
    assert code == 0 and not (out / 'timm_model_tests.json').exists()
    data = json.loads((out / 'timm_model_tests_family.json').read_text())
    assert sorted((r['model'], r['outcome']) for r in data['items']) == [
        ('test_steps_resnet', 'passed'), ('test_steps_resnet_bottleneck', 'passed')]
    assert data['as_timm_family'] and data['not_selected'] == {} and data['only'] == [
        'test_model_forward_intermediates']
    assert timm.list_models is timm.models._registry.list_models  # timm's own again after the run


def test_exit_status_is_pytests_when_nothing_is_kept(tmp_path):
    out = tmp_path / 'out'
    code, _ = _run(_tree(tmp_path / 'timm'), out, '--no-write', '--only', 'test_model_nothing')
    assert code == pytest.ExitCode.NO_TESTS_COLLECTED and not out.exists()


def test_refuses_a_source_without_timms_tests(tmp_path):
    with pytest.raises(SystemExit, match=r'no tests/test_models\.py; expected timm\'s source tree or sdist'):
        _run(_tree(tmp_path / 'timm', tests=False), tmp_path / 'out')
    with pytest.raises(SystemExit, match=r'missing\.tar: not a folder or a \.tar\.gz'):
        _run(tmp_path / 'missing.tar', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('version, found', [('0.9.0', 'timm 0.9.0'), (None, 'of no known version')])
def test_refuses_another_version_than_the_installed_one(tmp_path, version, found):
    src = _tree(tmp_path / 'timm', version=version)
    with pytest.raises(SystemExit, match=re.escape(f'--timm-src {src} is {found}') + '.*'
                       + re.escape(f'but timm {timm.__version__} is installed')):
        _run(src, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()
