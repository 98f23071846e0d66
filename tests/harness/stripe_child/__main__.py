"""`python -m tests.harness.stripe_child --port 0 --config '{...}'`: run the child process directly."""

import sys

from tests.harness.stripe_child.app import main

main(sys.argv[1:])
