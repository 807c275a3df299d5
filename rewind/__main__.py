"""Allow ``python -m rewind``."""

from rewind.cli import main

raise SystemExit(main())
