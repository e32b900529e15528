"""``python -m app`` is ``llm-router serve``."""

import sys

from app.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
