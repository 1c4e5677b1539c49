"""The package's layers: no import cycle, a command line that answers without loading torch, Ctrl-C while loading,
and the Steps models registered with timm whichever of the two is imported first."""
import os
import signal
import subprocess
import sys
import time

import grimp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
HEAVY = ('torch', 'timm', 'torchvision', 'matplotlib', 'numpy', 'safetensors', 'PIL', 'tqdm')


def _cycles(graph: grimp.ImportGraph):
    """Strongly connected components of more than one module (Tarjan), over every import statement, including
    those inside functions."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(m):
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in graph.find_modules_directly_imported_by(m):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles():
    graph = grimp.build_graph('stepsnet')
    assert _cycles(graph) == []
    # the same holds between the top-level modules and packages (the layers of the import-linter contract)
    top = grimp.build_graph('stepsnet')
    for package in ('stepsnet.cli', 'stepsnet.analysis', 'stepsnet.tasks', 'stepsnet.models', 'stepsnet.data',
                    'stepsnet.config', 'stepsnet.utils'):
        top.squash_module(package)
    assert _cycles(top) == []


def test_no_module_over_700_lines_and_a_short_fit():
    """Modules split by job stay readable: none over 700 lines; the training loop's ``fit`` at most 100."""
    import ast
    long = []
    for folder, _, files in os.walk(os.path.join(ROOT, 'stepsnet')):
        for name in files:
            if name.endswith('.py'):
                with open(os.path.join(folder, name), encoding='utf-8') as f:
                    n = sum(1 for _ in f)
                if n > 700:
                    long.append((os.path.relpath(os.path.join(folder, name), ROOT), n))
    assert not long, long
    with open(os.path.join(ROOT, 'stepsnet', 'engine', 'loop.py'), encoding='utf-8') as f:
        fit = next(n for n in ast.parse(f.read()).body if isinstance(n, ast.FunctionDef) and n.name == 'fit')
    assert fit.end_lineno - fit.lineno + 1 <= 100


def _run(code: str, timeout: float = 900):  # generous: a busy machine imports torch slowly
    return subprocess.run([sys.executable, '-c', code], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_help_and_usage_errors_do_not_load_torch():
    code = f'''
import sys
from stepsnet.cli import main
for argv in (['--help'], ['train', '--help'], ['compare', '--help'], ['analyze', 'pilot', '--help'],
             ['export-weights', '--help'], ['trian'], ['compare', '--jobs', '0'], ['eval-seg', '--mode', 'x']):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code in (0, 2), (argv, code)
loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
print('loaded:', loaded)
'''
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert 'loaded: []' in r.stdout
    assert "unknown command 'trian'" in r.stderr and "did you mean 'train'" in r.stderr


def _imported(args):
    """The modules ``python -X importtime -m stepsnet ARGS`` imported, and its exit code."""
    r = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'stepsnet', *args], env=ENV, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    names = {line.rsplit('|', 1)[1].strip() for line in r.stderr.splitlines() if line.startswith('import time:')}
    assert 'stepsnet.cli' in names, r.stderr[-2000:]  # -X importtime did report
    return names, r.returncode


@pytest.mark.parametrize('args', [
    ['train-cls', '--help'], ['train-lm', '--help'], ['train-det', '--help'], ['train-seg', '--help'],
    ['eval', '--help'], ['train', '-c', 'configs/det/synthetic.yaml', '--help'],
    ['train-det', '--no-such-flag'], ['train-lm', '--lr', 'fast'], ['train-seg', '--max-iters', '0'],
    ['train', '-c', 'configs/cls/digits_cpu.yaml', '--epochs', '0'],
])
def test_command_help_and_flag_errors_do_not_import_torch(args):
    names, code = _imported(args)
    assert code in (0, 2)
    assert not {'torch', 'timm', 'numpy'} & names, sorted({'torch', 'timm', 'numpy'} & names)


def test_steps_models_register_when_timm_is_imported_later():
    r = _run('import sys, stepsnet\n'
             'assert "torch" not in sys.modules and "timm" not in sys.modules\n'
             'import timm\n'
             'print(timm.is_model("steps_resnet50"), timm.is_model("test_steps_resnet"))\n'
             'print(stepsnet.create_steps_model("resnet18").__class__.__name__)\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['True', 'True', 'StepsResNet']


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs /proc to see the imports start')
def test_ctrl_c_while_loading_is_one_line_and_130():
    # `models` builds every model of the parity table after its imports, so a Ctrl-C that a library swallows while
    # it loads (some catch every exception around optional imports) is followed by one that lands, as a user's would
    # Ctrl-C as in a terminal, also when the tests run in the background (a shell's `&` starts jobs ignoring SIGINT,
    # and Python keeps an ignored SIGINT ignored)
    p = subprocess.Popen([sys.executable, '-m', 'stepsnet', 'models'], env=ENV, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = f'/proc/{p.pid}/maps'
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and p.poll() is None:  # wait until torch's libraries are being loaded
            with open(maps) as f:
                if 'libtorch' in f.read():
                    break
            time.sleep(0.01)
        assert p.poll() is None, 'the command ended before torch was loaded'
        for _ in range(20):
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                continue
        out, err = p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert 'Traceback' not in err
    assert err.strip().splitlines() == ['stepsnet models: interrupted']
