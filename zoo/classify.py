"""The classify task lives in zoo/tasks/classify.py; this path stays for plugins that import
``zoo.classify.Classify`` (the layout before zoo/tasks/)."""

from zoo.tasks.classify import *  # noqa: F401,F403
from zoo.tasks.classify import Classify  # noqa: F401
