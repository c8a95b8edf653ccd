"""``python -m evlog``: the ``evlog`` command line."""

from evlog.cli import main

raise SystemExit(main())
