"""Loaded at start-up by any Python with this directory on PYTHONPATH: applies the
platform shim named by FERRY_TESTING_SHIM (ferry_testing/platform_shim.py)."""

from __future__ import annotations

import os
import sys

if os.environ.get("FERRY_TESTING_SHIM"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        from ferry_testing.platform_shim import ENV, apply
    finally:
        del sys.path[0]
    apply(os.environ[ENV])
