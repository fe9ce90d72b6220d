"""The reconstruct task lives in zoo/tasks/reconstruct.py; this path stays for plugins that import
``zoo.reconstruct.Reconstruct`` (the layout before zoo/tasks/)."""

from zoo.tasks.reconstruct import *  # noqa: F401,F403
from zoo.tasks.reconstruct import Reconstruct  # noqa: F401
