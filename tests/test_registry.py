"""Plugin discovery through real entry points: the built-ins, a pip-installed third party, and
broken plugins that are reported by name without breaking the others."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import registry
from conftest import plugin_env

# what pyproject.toml registers, read from it: a new built-in is checked without a second list
_ENTRY_POINTS = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["entry-points"]
BUILTINS = {kind: set(_ENTRY_POINTS[group]) for kind, group in registry.GROUPS.items()}


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_builtins_are_discovered_from_pyproject(kind):
    found = registry.entries(kind)
    assert BUILTINS[kind] <= set(found)
    for name in BUILTINS[kind]:
        assert found[name].dist == "artzoo"
        assert found[name].value.startswith("zoo.")


def test_builtins_all_load():
    broken = {key: why for key, why in registry.errors().items() if key[1] in BUILTINS[key[0]]}
    assert broken == {}


def test_module_path_resolves_to_its_entry():
    assert registry.resolve("model", "zoo.models.cond_ae").name == "cond_ae"
    # the path before the built-ins moved into zoo/models/ (README: `python -m runners.run zoo.cond_ae`)
    assert registry.resolve("model", "zoo.cond_ae").name == "cond_ae"
    assert registry.resolve("task", "zoo.classify").name == "classify"


def test_the_old_module_paths_of_the_built_in_tasks_still_import_them():
    from zoo.classify import Classify
    from zoo.reconstruct import Reconstruct
    from zoo.restyle import Restyle

    assert (Classify, Reconstruct, Restyle) == tuple(registry.load("task", n) for n in ("classify", "reconstruct",
                                                                                        "restyle"))


def test_unknown_name_lists_close_matches():
    with pytest.raises(registry.PluginError, match=r"cond_ae") as info:
        registry.resolve("model", "cond_aee")
    assert "Registered models" in str(info.value)


def test_third_party_plugin_is_discovered_with_its_origin(with_plugin):
    entry = registry.entries("model")["tinynet"]
    assert (entry.dist, entry.version) == ("artzoo-tinynet", "0.3.1")
    net = registry.model("tinynet", num_classes=5, image_size=16, width=6)
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 5)
    assert [o.name for o in registry.options(registry.load("model", "tinynet"), "model")] == ["width"]
    data = registry.dataset("stripes", split="test", image_size=8)
    assert data.classes == ["horizontal", "vertical"] and data[0][0].shape == (3, 8, 8)


def test_broken_plugins_are_reported_by_name_and_others_still_work(with_plugin):
    with pytest.raises(registry.PluginError, match=r"'brokennet'.*failed to import.*artzoo_missing_dependency"):
        registry.load("model", "brokennet")
    with pytest.raises(registry.PluginError, match=r"'notask'.*default task"):
        registry.load("model", "notask")
    failed = registry.errors()
    assert set(failed) >= {("model", "brokennet"), ("model", "notask")}
    assert registry.load("model", "tinynet") is not None
    assert registry.load("model", "cnn") is not None


@pytest.mark.slow
def test_cli_lists_third_party_and_broken_plugins(plugin_site):
    out = subprocess.run([sys.executable, "-m", "runners.run", "--list"], capture_output=True, text=True,
                         env=plugin_env(plugin_site), check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "artzoo-tinynet 0.3.1" in lines["tinynet"] and "BROKEN" not in lines["tinynet"]
    assert "BROKEN" in lines["brokennet"] and "artzoo_missing_dependency" in lines["brokennet"]
    assert "artzoo 0.1.0" in lines["cond_ae"] and "BROKEN" not in lines["cond_ae"]


def test_a_path_is_routed_to_the_folder_dataset(tmp_path):
    assert registry.dataset_entry(tmp_path) == ("folder", {"root": str(tmp_path.resolve())})
    with pytest.raises(registry.PluginError, match="does not exist"):
        registry.dataset_entry(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(registry.PluginError, match="is a file"):
        registry.dataset_entry(tmp_path / "file.txt")


def test_a_datasets_defaults_may_only_set_data_keys():
    def builder(*, split: str = "train", image_size: int = 32):
        raise AssertionError("not built by the check")

    builder.defaults = {"data.image_size": 32}
    assert registry._contract_problem("dataset", builder) is None
    builder.defaults = {"data.image_size": 32, "train.epochs": 1}
    assert "data.* config overrides" in registry._contract_problem("dataset", builder)


def test_the_unknown_model_error_marks_the_broken_entries_it_lists(with_plugin):
    with pytest.raises(registry.PluginError) as info:
        registry.resolve("model", "nonet")
    listed = str(info.value).partition("Registered models: ")[2].partition(". Run")[0].split(", ")
    assert "brokennet (broken)" in listed and "notask (broken)" in listed
    assert "tinynet" in listed and "cnn" in listed and "failnet" in listed


def test_a_task_subclass_inherits_its_bases_options_and_its_own_come_first(with_plugin):
    names = [o.name for o in registry.options(registry.load("task", "focal"), "task")]
    classify = [o.name for o in registry.options(registry.load("task", "classify"), "task")]
    assert names == ["gamma", *classify] and "imbalance" in classify
    # an __init__ without **options (Restyle's, over Reconstruct) states every option it takes
    restyle = [o.name for o in registry.options(registry.load("task", "restyle"), "task")]
    assert "umap" in restyle and "max_points" not in restyle


@pytest.mark.parametrize(("name", "words"), [
    ("pixelstripes", ["dtype torch.uint8", "float values in [0, 1]"]),
    ("namelessstripes", ["no .classes list"]),
])
def test_a_dataset_that_breaks_the_contract_is_refused_when_loaded_naming_it(with_plugin, name, words):
    with pytest.raises(registry.PluginError) as info:
        registry.dataset(name, split="train", image_size=8)
    message = str(info.value)
    assert f"dataset plugin {name!r}" in message and "artzoo-tinynet 0.3.1" in message
    assert "(float C×H×W tensor in [0, 1]" in message
    for word in words:
        assert word in message, message
