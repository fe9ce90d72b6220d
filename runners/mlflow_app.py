"""``mlflow ui --app-name artzoo``: MLflow's own UI, opening experiments as model training.

MLflow 3.17's UI takes an experiment's view from one setting of the browser, its "workflow type"
(``localStorage["mlflow.workflowType_v1"]``, GenAI until the user flips the sidebar's switch) or
a ``?workflowType=`` in the address, and not from the experiment's ``mlflow.experimentKind``
tag: every experiment opened from the experiments list lands on the GenAI overview (traces,
latency), which an artzoo run never has. This app is MLflow's server, registered as an
``mlflow.app`` plugin (pyproject.toml), whose page sets that setting to model training where
the browser holds none (:data:`DEFAULTS`); a user who chose a view keeps it.
"""

from __future__ import annotations

import json

APP_NAME = "artzoo"  # `mlflow ui --app-name artzoo`: its entry point's name in pyproject.toml

# The UI's settings (its useLocalStorage keys are `${key}_v${version}`) and the values an artzoo
# store starts from: the model-training view, and the GenAI assistant not popped open on the first
# visit (it answers questions about traces, which no artzoo run has; its button stays)
DEFAULTS = {"mlflow.workflowType_v1": "machine_learning", "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True}
WORKFLOW_KEY = "mlflow.workflowType_v1"
_SCRIPT = "<script>try{%s}catch(e){}</script>" % "".join(
    f"if(localStorage.getItem({json.dumps(k)})===null)localStorage.setItem({json.dumps(k)},{json.dumps(json.dumps(v))});"
    for k, v in DEFAULTS.items())


def _model_training_by_default(response):
    """The UI's page (index.html) with :data:`_SCRIPT` first in its head, before the UI's code reads the setting."""
    if response.status_code != 200 or response.mimetype != "text/html":
        return response
    response.direct_passthrough = False  # index.html is sent as a file: read it to change it
    page = response.get_data(as_text=True)
    if "<head>" in page and WORKFLOW_KEY not in page:
        response.set_data(page.replace("<head>", "<head>" + _SCRIPT, 1))
    return response


def create_app():
    """MLflow's tracking server app (Flask, inside FastAPI under uvicorn), with its UI opening
    experiments as model training."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app

    app.after_request(_model_training_by_default)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
