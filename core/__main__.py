"""``python -m core``: the lab's command line (see core/cli.py)."""

from core.cli import main

raise SystemExit(main())
