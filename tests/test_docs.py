"""The examples in docs/ run as written."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(doc: str, section: str = ''):
    """The python blocks of ``docs/doc`` (of its section ``## section`` only, when given)."""
    text = (ROOT / 'docs' / doc).read_text()
    if section:
        text = text.split(f'\n## {section}\n', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', text, flags=re.S)


def test_engine_example_trains_stops_and_resumes(capsys):
    (code,) = python_blocks('engine.md', 'A loop of your own')
    scope = {}
    exec(compile(code, 'docs/engine.md', 'exec'), scope)
    assert scope['progress'].step == 20 and scope['progress'].best is not None
    out = capsys.readouterr().out  # the engine's plain log lines (no terminal here), then the example's own line
    assert 'resumed from ' in out and 'at step 10 of 20' in out and out.splitlines()[-1].startswith('20 ')
