"""The built-in tasks (the ``zoo.tasks`` entry-point group): classify, reconstruct, restyle. Their
base class and shared helpers are zoo/task.py."""
