"""``python -m core``: see ``core.cli``."""

from core.cli.main import main

raise SystemExit(main())
