"""`python -m stream.run`: the documented command line. A thin entry into `jobs.cli`, the one
module of the engine core that reaches up (see the README's "Layout")."""
import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
