"""Ship a meta-trained optimizer inside the package (l2lgd/weights/NAME.msgpack) with its figures.

    python scripts/package_pretrained.py --name mnist --run runs/mnist \
        --comparison runs/mnist-compare --description "..." --check-problems 10

The comparison folder is the output of `l2l compare --learned RUN --test-seed SEED`; its figures
are stored with the weights, and a small check evaluation is run now and stored for the tests.
To replace only the stored figures of a shipped optimizer with a new comparison of it:

    python scripts/package_pretrained.py --name mnist --refresh --comparison runs/eval/mnist
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from l2lgd.pretrained import CheckSpec, package_pretrained, read_provenance, refresh_evaluation
from l2lgd.results import comparison_from_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the name users type, e.g. mnist")
    parser.add_argument("--run", type=Path, help="meta-training run folder")
    parser.add_argument(
        "--refresh", action="store_true", help="only replace the shipped file's test figures"
    )
    parser.add_argument("--comparison", type=Path, required=True, help="`l2l compare` folder")
    parser.add_argument("--description", help="one line for `l2l pretrained`")
    parser.add_argument(
        "--learned-label", default=None, help="the run's label, if the comparison holds several"
    )
    parser.add_argument("--suite", type=Path, help="scripts/suite.py's suite.json, to store")
    parser.add_argument("--check-seed", type=int, default=7, help="seed of the check problems")
    parser.add_argument("--check-problems", type=int, default=100)
    parser.add_argument("--check-steps", type=int, default=100)
    args = parser.parse_args()
    if args.refresh:
        path = refresh_evaluation(args.name, args.comparison, args.learned_label)
        comparison = comparison_from_figures(read_provenance(args.name)["evaluation"])
        ratio = comparison.ratio_to_best_baseline(comparison.learned()[0])
        print(f"wrote {path}: ratio to the best baseline {ratio:.3f}")
        return
    if args.run is None or args.description is None:
        parser.error("--run and --description are required unless --refresh")
    check = CheckSpec(args.check_seed, args.check_problems, args.check_steps)
    suite = json.loads(args.suite.read_text()) if args.suite else None
    path = package_pretrained(
        args.name,
        args.run,
        args.comparison,
        args.description,
        check,
        None,
        args.learned_label,
        suite,
    )
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"check figure: {read_provenance(args.name)['check']}")


if __name__ == "__main__":
    main()
