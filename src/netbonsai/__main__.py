"""``python -m netbonsai``: the same command line as ``netbonsai``."""

from .cli import main

raise SystemExit(main())
