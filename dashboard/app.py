"""The artzoo dashboard: ``streamlit run dashboard/app.py`` in the folder you train in.

It reads MLflow only (docs/design.md, "What a run leaves in MLflow"), from the store the runner
writes to: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working folder.
This file is only the router; each page is a file under ``views/`` (not ``pages/``, which
Streamlit would list in the sidebar by file name until this router has run).
"""

import streamlit as st

from dashboard import store

st.set_page_config(page_title="artzoo", layout="wide")

pages = [
    st.Page("views/runs.py", title="Runs", icon=":material/table_rows:", default=True),
    st.Page("views/run.py", title="Run", icon=":material/monitoring:"),
    st.Page("views/clusters.py", title="Clusters", icon=":material/scatter_plot:"),
    st.Page("views/restyle.py", title="Restyle", icon=":material/brush:"),
]
page = st.navigation(pages)

uri = store.tracking_uri()
st.sidebar.caption(f"Tracking store: `{uri}`")
if store.missing_sqlite(uri):
    st.sidebar.caption("(not created yet: no run has been logged here)")
if st.sidebar.button("Refresh", help="Read the store again (new runs, new metrics)"):
    store.clear()
page.run()
