"""Regenerate the parity table in README.md from `stepsnet models` (between the table markers)."""
import pathlib
import sys

from stepsnet.analysis.complexity import complexity_table, format_table

BEGIN, END = '<!-- models-table:begin -->', '<!-- models-table:end -->'


def replace_table(text: str, table: str, begin: str = BEGIN, end: str = END) -> str:
    if begin not in text or end not in text:
        raise ValueError(f'the file has no {begin} ... {end} markers')
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f'{head}{begin}\n{table}{end}{tail}'


def write_table(path: pathlib.Path, table: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``table`` between the markers of the file at ``path`` (through a temporary file and a rename)."""
    text = path.read_text()
    new = replace_table(text, table, begin, end)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(new)
    tmp.replace(path)
    print(f'{path}: table {"updated" if new != text else "unchanged"}')


def main() -> int:
    write_table(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'README.md'), format_table(complexity_table(), 'md'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
