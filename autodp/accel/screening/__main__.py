"""``python -m autodp.accel.screening``: the command line in cli.py."""
import sys

from autodp.accel.screening.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
