"""Pool one small built-in graph on every installed backend and print the six outputs
side by side, with each backend's largest difference from the NumPy float64 reference.

    python examples/compare_backends.py        # the same as: dmon parity

The graph: three planted communities of 8 nodes (seeded), features that carry the
community plus noise, and assignment logits from a fixed random projection of them.
"""

import argparse

from dmon.parity.pool_table import report

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions (default 20)")
    print(report(parser.parse_args().reps))
