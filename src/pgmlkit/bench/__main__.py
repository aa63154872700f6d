"""python -m pgmlkit.bench: see pgmlkit.bench's docstring."""
import sys

from .cli import main

sys.exit(main())
