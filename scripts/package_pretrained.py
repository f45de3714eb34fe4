"""Ship a meta-trained optimizer inside the package (l2lgd/weights/NAME.msgpack) with its figures.

    python scripts/package_pretrained.py --name mnist --run runs/mnist \
        --comparison runs/mnist-compare --description "..." --check-problems 10

The comparison folder is the output of `l2l compare --learned RUN --test-seed SEED`; its figures
are stored with the weights, and a small check evaluation is run now and stored for the tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from l2lgd.pretrained import CheckSpec, package_pretrained, read_provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the name users type, e.g. mnist")
    parser.add_argument("--run", type=Path, required=True, help="meta-training run folder")
    parser.add_argument("--comparison", type=Path, required=True, help="`l2l compare` folder")
    parser.add_argument("--description", required=True, help="one line for `l2l pretrained`")
    parser.add_argument(
        "--learned-label", default=None, help="the run's label, if the comparison holds several"
    )
    parser.add_argument("--check-seed", type=int, default=7, help="seed of the check problems")
    parser.add_argument("--check-problems", type=int, default=100)
    parser.add_argument("--check-steps", type=int, default=100)
    args = parser.parse_args()
    check = CheckSpec(args.check_seed, args.check_problems, args.check_steps)
    path = package_pretrained(
        args.name, args.run, args.comparison, args.description, check, None, args.learned_label
    )
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"check figure: {read_provenance(args.name)['check']}")


if __name__ == "__main__":
    main()
