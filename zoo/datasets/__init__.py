"""The built-in datasets (the ``zoo.datasets`` entry-point group): synthart, synthart_lt, folder,
digits. What they share (the decode cache, ImageDataset) is zoo/data.py."""
