"""The examples in docs/ run as written."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(doc: str):
    return re.findall(r'```python\n(.*?)```', (ROOT / 'docs' / doc).read_text(), flags=re.S)


def test_engine_example_trains_stops_and_resumes(capsys):
    (code,) = python_blocks('engine.md')
    scope = {}
    exec(compile(code, 'docs/engine.md', 'exec'), scope)
    assert scope['progress'].step == 20 and scope['progress'].best is not None
    out = capsys.readouterr().out  # the engine's plain log lines (no terminal here), then the example's own line
    assert 'resumed from ' in out and 'at step 10 of 20' in out and out.splitlines()[-1].startswith('20 ')
