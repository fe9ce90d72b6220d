"""The MLflow run schema's names, declared once: the runner writes them, the dashboard and the
benchmarks read them (docs/design.md, "MLflow run schema", says what each holds).

Tags are :class:`Tag`'s constants; artifact paths :class:`Artifact`'s (a task declares those it
writes in ``Task.artifacts``); metric names are built by the functions below, never by hand.
"""

from __future__ import annotations


class Tag:
    """Run tags (``zoo.*``; MLflow's own where it has one)."""

    ENTRY = "zoo.entry"  # the registry entry trained (`python -m runners.run ENTRY`)
    MODEL = "zoo.model"
    TASK = "zoo.task"
    DATASET = "zoo.dataset"
    CLASSES = "zoo.classes"  # JSON list of the class names, in label order
    DEVICE = "zoo.device"
    WORLD_SIZE = "zoo.world_size"
    SEED = "zoo.seed"
    SEEDS = "zoo.seeds"  # on a multi-seed parent: JSON list of its seeds
    ERROR = "zoo.error"  # why a FAILED run failed
    STOPPED = "zoo.stopped"  # why a KILLED run was stopped (a sweep's pruner)
    STALE = "zoo.stale"  # a run `runners.sync --mark-stale` marked KILLED
    SWEEP = "zoo.sweep"  # on a sweep's parent: "grid" or "search"
    SWEEP_KEYS = "zoo.sweep_keys"  # JSON list of the keys swept
    SWEEP_CONFIG = "zoo.sweep_config"  # on a configuration or trial: JSON of its swept values
    SWEEP_BEST = "zoo.sweep_best"
    SWEEP_BEST_RUN = "zoo.sweep_best_run"
    SWEEP_METRIC = "zoo.sweep_metric"
    STUDY = "zoo.study"
    STORAGE = "zoo.storage"
    TRIAL = "zoo.trial"
    BEST_TRIAL = "zoo.best_trial"
    NOTE = "mlflow.note.content"  # MLflow's description, on runs and logged models alike


class Artifact:
    """Artifact paths of a run (``Task.artifacts`` names those its task writes)."""

    CONFIG = "config.json"
    LAST = "checkpoints/last.pt"
    BEST = "checkpoints/best.pt"
    PER_CLASS = "tables/per_class.csv"
    CONFUSION = "tables/confusion.csv"
    CONFUSION_PLOT = "plots/confusion_matrix.png"
    RELIABILITY_PLOT = "plots/reliability.png"
    EMBEDDINGS = "embeddings/test.npz"
    RESTYLES = "restyle/test.npz"
    PER_STYLE = "tables/restyle_per_style.csv"
    RESTYLE_PLOT = "plots/restyle_test.png"
    UNREADABLE = "data/unreadable.json"


def train(name: str) -> str:
    """A training-step value the task logs (its ``training_step`` outputs): ``train/<name>``."""
    return f"train/{name}"


def test(name: str) -> str:
    """A test-split metric: ``test/<name>``."""
    return f"test/{name}"


def val(name: str) -> str:
    """A validation metric, logged each epoch: ``val/<name>``."""
    return f"val/{name}"


def best(name: str) -> str:
    """The best validation value of a run's main metric, once, at its end: ``val/<name>_best``."""
    return f"val/{name}_best"


def embedding_metric(embedding: str, score: str, space: str) -> str:
    """A score of one embedding of the analysis (zoo/analysis.py), without ``test/``: ``embedding``
    is ``code`` (named without a prefix), ``baseline``, ``style`` or ``untrained_style``;
    ``score`` is ``cluster_nmi``, ``cluster_ari`` or ``silhouette``; ``space`` ``pca`` or ``umap``."""
    return f"{'' if embedding == 'code' else embedding + '_'}{score}_{space}"


def precision_metric(embedding: str) -> str:
    """An embedding's precision@10 (its nearest test neighbours that share a style), without ``test/``."""
    return f"{embedding}_p_at_10"
