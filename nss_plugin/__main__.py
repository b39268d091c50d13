"""``python -m nss_plugin --snapshot FILE``: see ``nss_plugin.daemon``."""

from __future__ import annotations

import sys

from .daemon import main

sys.exit(main())
