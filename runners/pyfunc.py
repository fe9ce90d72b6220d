"""A run's model in MLflow's format: load it with ``mlflow.pyfunc.load_model``, register it,
serve it with ``mlflow models serve``.

Every finished run logs one (``train.log_model``, on by default) under the name ``model``:
``runs:/<id>/model``, listed under the run's "Logged models" in the MLflow UI. It holds the
run's ``config.json`` and the inference part of the checkpoint its task serves, the one its
test split scored (the weights and the task's state, read back with
``torch.load(weights_only=True)``), and :class:`ArtzooModel`, which rebuilds the network
through the registry: artzoo (and the plugin package a run's model or task came from) must be
installed where the model is loaded, as a timm model needs timm. Serve it from that
environment::

    mlflow models serve -m runs:/<id>/model --env-manager local -h 127.0.0.1 -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_split": {"columns": ["image", "style"], "data": [["<base64 of a JPEG>", "Cubism"]]}}'

Input: a DataFrame with a column ``image`` (an image file's bytes; base64 in JSON), and for a
restyle run a column ``style`` (a style's name). Params: ``size`` (the short side of a painted
picture; 0, the default: the picture's own size) and ``mark_scale`` (``auto``, or a number ≥ 1:
zoo/pictures.py). Output, one row per input row: for classify the columns of
``runners.predict``'s predictions.csv; for restyle ``image``, the restyled picture as PNG bytes
(base64 in JSON) at the input's size, and ``style``, ``code`` and ``style_embedding``; for
reconstruct ``image`` (the reconstruction), ``code`` and ``style_embedding`` (where present).

A column ``path`` (a file's path instead of its bytes) is read in the caller's own process
only: a model served by MLflow's scoring server refuses it, whatever the path and before any
file is touched, unless ``ARTZOO_IMAGE_ROOT`` names the folder it may read under (links and
``..`` resolved first). Bad input is refused with HTTP 400 and the reason.

``train.register=NAME`` registers the model in the Model Registry, as a new version of NAME
with the alias ``newest``; for a run that has ended::

    python -m runners.pyfunc RUN [--register NAME]
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

__all__ = ["ALIAS", "ArtzooModel", "log_model", "register"]

ALIAS = "newest"  # the alias a registration moves to its new version
NAME = "model"  # the logged model's name under the run: runs:/<id>/model


class ArtzooModel(mlflow.pyfunc.PythonModel):
    """A trained artzoo run as an MLflow pyfunc model (see the module's docstring)."""

    def load_context(self, context) -> None:
        from runners import checkpoint, inference

        self.cfg = json.loads(Path(context.artifacts["config"]).read_text())
        self.task = inference.build(self.cfg, checkpoint.load(context.artifacts["weights"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from runners.predict import top_styles
        from zoo.data import UnreadableImage
        from zoo.imageio import read_image, read_picture
        from zoo.pictures import PictureTooLarge, as_tensor, is_picture, predict_picture

        frame = pd.DataFrame(model_input)
        params = {**PARAMS, **(params or {})}
        if "image" not in frame and "path" not in frame:
            raise _refused(f"the input needs a column 'image' (an image file's bytes; base64 in JSON); it has "
                           f"{list(frame)}")
        size, classes, in_chans = int(self.cfg["data"]["image_size"]), list(self.cfg["classes"]), int(self.cfg["in_chans"])
        sources = [_source(frame, row) for row in range(len(frame))]  # every path checked before any is read
        options = {}
        if "style" in frame and "style" in inspect.signature(self.task.predict).parameters:
            unknown = sorted(set(frame["style"]) - set(classes))
            if unknown:
                raise _refused(f"unknown style {', '.join(map(repr, unknown))}: this run knows {', '.join(classes)}")
            options["style"] = torch.tensor([classes.index(s) for s in frame["style"]])

        try:
            x = as_tensor(np.stack([read_image(source, size) for source in sources]), in_chans)
            # at the run's size: probabilities, codes, embeddings; pictures at their own, below
            full = self.task.predict(x)
            out = {k: v for k, v in full.items() if not is_picture(v, x)}
            pictures = []
            if "style" in options or len(out) < len(full):  # a restyle, or a reconstruction
                short_side = int(params["size"]) or None
                for row, source in enumerate(sources):
                    one = {"style": options["style"][row : row + 1]} if "style" in options else {}
                    picture = as_tensor(read_picture(source, short_side), in_chans)[None]
                    painted = predict_picture(self.task, picture, size, mark_scale=params["mark_scale"], **one)
                    pictures.append(_png(next(iter(painted.values()))[0]))
        except (UnreadableImage, PictureTooLarge, ValueError) as exc:
            raise _refused(str(exc)) from None
        result = pd.DataFrame(top_styles(out.pop("probabilities"), classes)) if "probabilities" in out else pd.DataFrame(index=range(len(x)))
        if "path" in frame:
            result.insert(0, "path", list(frame["path"]))
        if pictures:
            result["image"] = pictures
        for key, value in out.items():
            result[key] = list(np.asarray(value, dtype=np.float64))
        if "style" in options:
            result["style"] = list(frame["style"])
        return result


PARAMS = {"size": 0, "mark_scale": "auto"}  # the params a call may give, and their defaults
ROOT_VARIABLE = "ARTZOO_IMAGE_ROOT"  # a served model reads the column path only under this folder


def _refused(message: str) -> Exception:
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # HTTP 400, no traceback


def _serving() -> bool:
    """Whether this process is MLflow's scoring server (``mlflow models serve``, its docker image),
    which marks itself so before it takes a request."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    return bool(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get())


def _source(frame: pd.DataFrame, row: int):
    """Row ``row``'s picture: its bytes, or its path where paths may be read here.

    A served model opens no file a request names: anyone who reaches the endpoint could read the
    server's images, or learn which files exist from the answer. So ``path`` is read in the
    caller's own process (``mlflow.pyfunc.load_model``), or under the folder ``ARTZOO_IMAGE_ROOT``
    names; otherwise it is refused, with the same words whatever the path, before any file is
    touched."""
    image = frame["image"].iloc[row] if "image" in frame else None
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if "path" not in frame or not isinstance(frame["path"].iloc[row], str):
        raise _refused(f"row {row} has no picture: give its file's bytes in the column 'image' (base64 in JSON)")
    path, root = frame["path"].iloc[row], os.environ.get(ROOT_VARIABLE)
    if root:
        resolved, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
        if not resolved.is_relative_to(base):
            raise _refused(f"row {row}: a path is read only under {ROOT_VARIABLE}={root}; send the picture's "
                           f"bytes in the column 'image' (base64 in JSON)")
        return str(resolved)
    if _serving():
        raise _refused("a served model reads no file named in a request (the column 'path'): send the picture's "
                       "bytes in the column 'image' (base64 in JSON), or start the server with "
                       f"{ROOT_VARIABLE}=<a folder> to serve the images under that folder by path")
    return path


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    from zoo.task import to_rgb8

    buffer = io.BytesIO()
    Image.fromarray(to_rgb8(image[None])[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def _signature(task_name: str):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("binary", "image", required=False), ColSpec("string", "path", required=False),
                     ColSpec("string", "style", required=False)])
    params = ParamSchema([ParamSpec("size", "long", PARAMS["size"]),
                          ParamSpec("mark_scale", "string", PARAMS["mark_scale"])])
    outputs = None
    if task_name == "classify":
        outputs = Schema([ColSpec("string", "style"), ColSpec("double", "probability")])
    elif task_name == "restyle":
        outputs = Schema([ColSpec("binary", "image"), ColSpec("string", "style")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _requirements() -> list[str]:
    """The packages the model needs, at this environment's versions (artzoo itself, which is
    not on PyPI, is installed from its clone: see the module's docstring)."""
    from importlib.metadata import PackageNotFoundError, version

    needed = []
    for name in ("torch", "torchvision", "timm", "numpy", "pandas", "pillow", "pydantic", "mlflow", "scikit-learn"):
        try:
            needed.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    return needed


# The run's step the model is filed at. MLflow links every metric of the run at that step to the
# model; the runner links the model's scores itself, by dataset (runners/train.py), and no metric
# is logged at this step: not the machine's samples, which MLflow files at steps 0, 1, 2, ...
MODEL_STEP = -1


def log_model(run_id: str, cfg: dict, checkpoint_path: Path):
    """Log ``runs:/<run_id>/model`` from the run's config and checkpoint; returns MLflow's ModelInfo."""
    from mlflow.tracking import MlflowClient

    from runners import checkpoint
    from zoo.schema import Tag

    client = MlflowClient()
    run = client.get_run(run_id)
    # made here, in the run's experiment: Model.log alone would file it under the active one
    model = client.create_logged_model(run.info.experiment_id, name=NAME, source_run_id=run_id,
                                       params=dict(run.data.params), model_type=cfg["task"]["name"],
                                       tags={Tag.ENTRY: str(cfg.get("entry", ""))})
    with tempfile.TemporaryDirectory(prefix="artzoo-model-") as tmp:
        weights, config = Path(tmp) / "weights.pt", Path(tmp) / "config.json"
        torch.save(checkpoint.inference_state(checkpoint.load(checkpoint_path)), weights)
        config.write_text(json.dumps(cfg, indent=2, default=str))
        return mlflow.models.Model.log(
            artifact_path=None, name=NAME, flavor=mlflow.pyfunc, run_id=run_id,
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            model_id=model.model_id, artifacts={"weights": str(weights), "config": str(config)},
            signature=_signature(cfg["task"]["name"]), pip_requirements=_requirements(), step=MODEL_STEP)


def register(model_uri: str, name: str) -> str:
    """Register ``model_uri`` as a new version of ``name`` and point the alias ``newest`` at it;
    returns ``models:/<name>/<version>``."""
    from mlflow.tracking import MlflowClient

    version = mlflow.register_model(model_uri, name).version
    MlflowClient().set_registered_model_alias(name, ALIAS, version)
    return f"models:/{name}/{version}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.pyfunc",
                                     description="Log a run's MLflow model (if it has none) and register it.")
    parser.add_argument("run", metavar="RUN", help="run id or runs:/<id>")
    parser.add_argument("--register", metavar="NAME", help="also register it in the Model Registry as NAME")
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient

    from runners.inference import ModelError, download, run_id_of

    client = MlflowClient()
    try:
        run_id = run_id_of(args.run, client)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    models = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}' AND name = '{NAME}'",
                                         output_format="list", experiment_ids=[client.get_run(run_id).info.experiment_id])
    if models:
        uri = models[0].model_uri
        print(f"run {run_id} has its model already: {uri}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                cfg, ckpt = download(run_id, tmp, client)
            except ModelError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            uri = log_model(run_id, cfg, ckpt).model_uri
        print(f"logged {uri} for run {run_id}")
    if args.register:
        print(f"registered {register(uri, args.register)} (alias @{ALIAS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
