"""`make iam-differential`: every case of tests/differential/cases.py against the independent
evaluator; prints the figures (cases per category, agreements, disagreements decided by the
documentation, undecided) and exits non-zero if any disagreement is undecided."""

from __future__ import annotations

import sys

from tests.differential.cases import all_cases
from tests.differential.compare import compare, table


def main() -> int:
    result = compare(all_cases())
    print(table(result))
    for line in result.decided:
        print("decided:", line)
    for line in result.errors:
        print("oracle error:", line)
    for line in result.undecided:
        print("UNDECIDED:", line)
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
