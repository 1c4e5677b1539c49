"""Merge benchmark CSVs (one per pair or setting) into OUT.csv, OUT.md (the table) and, with --png, OUT.png.

    python benchmarks/merge_results.py benchmarks/results/cls_cpu_float32 part1.csv part2.csv [--png]

Missing parts are reported and left out (a run stopped early keeps what it finished).
"""
import argparse
import os

from stepsnet.analysis.speed_tables import format_ratios, plot_ratios, read_csv, write_csv
from stepsnet.utils.checkpoint import atomic_write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out', help='output path without extension')
    p.add_argument('parts', nargs='+', help='CSVs written by stepsnet benchmark --csv')
    p.add_argument('--png', action='store_true', help='also plot the ratios')
    args = p.parse_args()
    rows = []
    for part in args.parts:
        if os.path.exists(part):
            rows += read_csv(part)
        else:
            print(f'no results in {part} (not measured)')
    if not rows:
        print(f'nothing to merge into {args.out}')
        return
    write_csv(rows, args.out + '.csv')
    table = format_ratios(rows)
    atomic_write_text(args.out + '.md', table)
    if args.png:
        plot_ratios(rows, args.out + '.png')
    print(table)


if __name__ == '__main__':
    main()
