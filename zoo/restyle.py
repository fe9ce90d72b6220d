"""The restyle task lives in zoo/tasks/restyle.py; this path stays for plugins that import
``zoo.restyle.Restyle`` (the layout before zoo/tasks/)."""

from zoo.tasks.restyle import *  # noqa: F401,F403
from zoo.tasks.restyle import Restyle  # noqa: F401
