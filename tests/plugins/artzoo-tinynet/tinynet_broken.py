"""A plugin whose import fails, as a half-installed third-party package would."""

import artzoo_missing_dependency  # noqa: F401

net = None
