"""Prints a summary of the numbers given as arguments."""

import sys

from stats import summarize

numbers = [float(arg) if "." in arg else int(arg) for arg in sys.argv[1:]]
if not numbers:
    print("usage: main.py NUMBER...", file=sys.stderr)
    sys.exit(2)
print(summarize(numbers))
