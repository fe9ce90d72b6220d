"""What MLflow runs to load an artzoo model: "models from code" (runners/pyfunc.py), so that the
logged model is this file and data, never a pickled object."""

import mlflow

from runners.pyfunc import ArtzooModel

mlflow.models.set_model(ArtzooModel())
