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
    assert capsys.readouterr().out.startswith('20 ')
