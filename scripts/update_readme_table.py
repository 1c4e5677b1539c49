"""Regenerate the parity table in README.md from `stepsnet models` (between the table markers)."""
import pathlib
import sys

from stepsnet.analysis.complexity import complexity_table, format_table

BEGIN, END = '<!-- models-table:begin -->', '<!-- models-table:end -->'


def replace_table(text: str, table: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f'README has no {BEGIN} ... {END} markers')
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f'{head}{BEGIN}\n{table}{END}{tail}'


def main() -> int:
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'README.md')
    text = path.read_text()
    new = replace_table(text, format_table(complexity_table(), 'md'))
    tmp = path.with_suffix('.tmp')
    tmp.write_text(new)
    tmp.replace(path)
    print(f'{path}: table {"updated" if new != text else "unchanged"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
