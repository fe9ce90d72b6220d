"""The folder dataset reads each layout it promises, and reports what it cannot read."""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import registry
from images import PALETTE, UNREADABLE, solid
from zoo.datasets.folder import LayoutError, folder

SIZE = 8


def class_folders(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """root/SPLIT/CLASS/*.png, counts[split][class] files, each class in its own colour."""
    for split, per_class in counts.items():
        for name, n in per_class.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                solid(root / split / name / f"{k:03d}.png", PALETTE[sorted(_all_classes(counts)).index(name)])
    return root


def _all_classes(counts: dict[str, dict[str, int]]) -> set[str]:
    return {c for per_class in counts.values() for c in per_class}


def counts(ds) -> dict[str, int]:
    return dict(zip(ds.classes, ds.class_counts().tolist()))


def assert_labels_match_pixels(ds) -> None:
    """Every item's colour is its class's colour: labels and images stay paired."""
    for i in range(len(ds)):
        image, label = ds[i]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
        assert image.shape == (3, SIZE, SIZE)
        pixel = tuple((image[:, 4, 4] * 255).round().int().tolist())
        assert pixel == PALETTE[label], (i, ds.classes[label], pixel)


WIKIART = {
    "train": {"Impressionism": 4, "Cubism": 3, "Action_painting": 2},
    "valid": {"Impressionism": 2, "Cubism": 1, "Action_painting": 1},
    "test": {"Impressionism": 2, "Cubism": 2},  # as in WikiArt's export: no Action_painting here
}


def test_roboflow_folder_export(tmp_path):
    root = class_folders(tmp_path / "wikiart", WIKIART)
    for split, per_class in WIKIART.items():
        ds = folder(split=split, image_size=SIZE, root=str(root))
        assert ds.classes == ["Action_painting", "Cubism", "Impressionism"]  # sorted union, every split
        assert counts(ds) == {c: per_class.get(c, 0) for c in ds.classes}
        assert_labels_match_pixels(ds)
        assert isinstance(ds.images, np.memmap)  # pixels stay on disk, only the rows are chosen


def write_csv_split(where: Path, classes: list[str], files: dict[str, str]) -> None:
    """Roboflow's CSV export: images beside _classes.csv, whose headers carry leading spaces."""
    where.mkdir(parents=True)
    lines = ["filename, " + ", ".join(classes)]
    for name, cls in files.items():
        solid(where / name, PALETTE[sorted(classes).index(cls)], fmt="JPEG")
        lines.append(name + ", " + ", ".join("1" if c == cls else "0" for c in classes))
    (where / "_classes.csv").write_text("\n".join(lines) + "\n")


def test_roboflow_csv_export_with_leading_spaces_in_headers(tmp_path):
    root = tmp_path / "wikiart-csv"
    classes = ["Realism", "Abstract_Expressionism", "Baroque"]  # not sorted in the file
    train_files = {"a_jpg.rf.1.jpg": "Realism", "b_jpg.rf.2.jpg": "Baroque", "c.jpg": "Baroque"}
    write_csv_split(root / "train", classes, train_files)
    write_csv_split(root / "valid", classes, {"d.jpg": "Abstract_Expressionism"})
    write_csv_split(root / "test", classes, {"e.jpg": "Realism", "f.jpg": "Abstract_Expressionism"})

    train = folder(split="train", image_size=SIZE, root=str(root))
    assert train.classes == ["Abstract_Expressionism", "Baroque", "Realism"]
    assert train.class_counts().tolist() == [0, 2, 1]
    for split in ("train", "valid", "test"):
        ds = registry.dataset(root, split=split, image_size=SIZE)
        for i in range(len(ds)):  # JPEG: colours are close, not exact
            image, label = ds[i]
            assert np.abs((image[:, 4, 4] * 255).numpy() - PALETTE[label]).max() < 8
    assert len(registry.dataset(root, split="test", image_size=SIZE)) == 2


def test_csv_rows_that_are_not_one_label_are_skipped_with_the_reason(tmp_path):
    root = tmp_path / "csv-odd"
    write_csv_split(root / "train", ["A", "B"], {"a.jpg": "A", "b.jpg": "B"})
    write_csv_split(root / "test", ["A", "B"], {"c.jpg": "A"})
    with open(root / "train" / "_classes.csv", "a") as f:
        f.write("both.jpg, 1, 1\nmissing.jpg, 0, 1\n")
    solid(root / "train" / "both.jpg", (1, 2, 3))
    solid(root / "train" / "unlisted.jpg", (1, 2, 3))
    with pytest.warns(UserWarning, match="skipped 3"):
        ds = folder(split="train", image_size=SIZE, root=str(root))
    assert len(ds) == 2
    reasons = {Path(p).name: r for p, r in ds.skipped}
    assert reasons == {
        "both.jpg": "2 classes marked in _classes.csv; expected exactly one",
        "missing.jpg": "listed in _classes.csv but not found",
        "unlisted.jpg": "not listed in _classes.csv",
    }


COURSE = {
    "train": {"Baroque": 10, "Cubism": 20, "Pop_Art": 1},
    "test": {"Baroque": 2, "Cubism": 2, "Pop_Art": 1},
}


def test_course_layout_carves_a_stratified_disjoint_deterministic_valid(tmp_path):
    root = class_folders(tmp_path / "course", COURSE)
    train = folder(split="train", image_size=SIZE, root=str(root), valid_fraction=0.2)
    valid = folder(split="valid", image_size=SIZE, root=str(root), valid_fraction=0.2)
    # Both parts index the decode cache of train/: disjoint rows that together cover it.
    assert train.images.filename == valid.images.filename
    assert not set(train.rows) & set(valid.rows)
    assert sorted([*train.rows, *valid.rows]) == list(range(31))
    # Stratified: 20% of each class that can be split; the single Pop_Art file stays in train.
    assert counts(valid) == {"Baroque": 2, "Cubism": 4, "Pop_Art": 0}
    assert train.class_counts().tolist() == [8, 16, 1]
    assert_labels_match_pixels(train)
    assert_labels_match_pixels(valid)

    again = folder(split="valid", image_size=SIZE, root=str(root), valid_fraction=0.2)
    assert np.array_equal(again.rows, valid.rows)
    other_seed = folder(split="valid", image_size=SIZE, root=str(root), valid_fraction=0.2, seed=1)
    assert not np.array_equal(other_seed.rows, valid.rows)
    assert len(folder(split="test", image_size=SIZE, root=str(root))) == 5


def test_carving_from_too_few_files_to_stratify_does_not_fail(tmp_path):
    # 10% of 6 files is one validation file for three classes: sklearn cannot stratify that.
    root = class_folders(tmp_path / "tiny", {"train": {"A": 2, "B": 2, "C": 2}, "test": {"A": 1}})
    train = folder(split="train", image_size=SIZE, root=str(root))
    valid = folder(split="valid", image_size=SIZE, root=str(root))
    assert (len(train), len(valid)) == (5, 1)
    assert train.classes == valid.classes == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (["Baroque/a.png", "Cubism/b.png"], "no train/ and test/ folders (it holds: Baroque, Cubism)"),
        (["train/A/a.png", "valid/A/b.png"], "no train/ and test/ folders"),
        (["export/train/A/a.png", "export/test/A/b.png"], "did you mean"),
        (["train/a.png", "test/A/b.png"], "has neither class folders nor a _classes.csv"),
        (["train/A/notes.txt", "test/A/b.png"], "holds no image files"),
    ],
)
def test_a_layout_it_cannot_read_says_what_it_expected(tmp_path, tree, message):
    root = tmp_path / "odd"
    for name in tree:
        solid(root / name, PALETTE[0], fmt="PNG")
    with pytest.raises(LayoutError) as caught:
        registry.dataset(root, split="train", image_size=SIZE)
    text = str(caught.value)
    assert message in text and str(root) in text
    for layout in ("Roboflow folder export", "Roboflow CSV export", "course layout"):
        assert layout in text


def test_unreadable_files_are_reported_with_their_reason_and_skipped(tmp_path):
    root = class_folders(tmp_path / "broken", {"train": {"A": 3}, "valid": {"A": 1}, "test": {"A": 1}})
    for name, (data, _) in UNREADABLE.items():
        (root / "train" / "A" / name).write_bytes(data)
    with pytest.warns(UserWarning, match=f"skipped {len(UNREADABLE)} unreadable") as caught:
        ds = folder(split="train", image_size=SIZE, root=str(root))
    assert len(caught) == 1
    assert len(ds) == 3 and ds.class_counts().tolist() == [3]
    assert_labels_match_pixels(ds)
    reasons = {Path(p).name: r for p, r in ds.skipped}
    assert sorted(reasons) == sorted(UNREADABLE)
    for name, (_, word) in UNREADABLE.items():
        assert word in reasons[name]
        assert str(root / "train" / "A" / name) in str(caught[0].message)
    assert f"{len(UNREADABLE)} unreadable file(s) skipped" in ds.summary()


def test_many_unreadable_files_make_one_summary_warning(tmp_path):
    root = class_folders(tmp_path / "many-broken", {"train": {"A": 2}, "valid": {"A": 1}, "test": {"A": 1}})
    for k in range(25):
        (root / "train" / "A" / f"bad{k:02d}.jpg").write_bytes(b"")
    with pytest.warns(UserWarning) as caught:
        ds = folder(split="train", image_size=SIZE, root=str(root))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 25 unreadable" in message and "and 15 more (see dataset.skipped)" in message
    assert len(ds.skipped) == 25 and len(ds) == 2


def test_files_that_are_not_images_are_ignored_silently(tmp_path):
    root = class_folders(tmp_path / "clutter", {"train": {"A": 2}, "valid": {"A": 1}, "test": {"A": 1}})
    for name in (".DS_Store", "Thumbs.db", "notes.txt", "labels.csv", ".hidden.jpg", "._000.png"):
        (root / "train" / "A" / name).write_bytes(b"\0\1 not a picture")
    (root / "README.roboflow.txt").write_text("exported from roboflow")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = folder(split="train", image_size=SIZE, root=str(root))
    assert len(ds) == 2 and ds.skipped == [] and ds.classes == ["A"]


def test_non_ascii_and_spaces_in_class_and_file_names(tmp_path):
    root = tmp_path / "art collection"
    nfc, nfd = (unicodedata.normalize(form, "Réalisme ancien") for form in ("NFC", "NFD"))
    solid(root / "train" / nfc / "tête à tête 1.png", PALETTE[1])
    solid(root / "train" / "Cubism" / "ça va.png", PALETTE[0])
    solid(root / "test" / nfd / "写真 2.png", PALETTE[1])  # the same class, as a Mac stores it
    solid(root / "test" / "Cubism" / "b.png", PALETTE[0])
    test = registry.dataset(str(root), split="test", image_size=SIZE)
    assert test.classes == ["Cubism", nfc]
    assert_labels_match_pixels(test)


def test_listing_order_is_sorted_not_filesystem_order(tmp_path):
    root = tmp_path / "order"
    for name, colour in [("c.png", PALETTE[2]), ("a.png", PALETTE[0]), ("b.png", PALETTE[1])]:
        solid(root / "test" / "X" / name, colour)
    solid(root / "train" / "X" / "a.png", PALETTE[0])
    ds = folder(split="test", image_size=SIZE, root=str(root))
    firsts = [tuple((ds[i][0][:, 0, 0] * 255).round().int().tolist()) for i in range(3)]
    assert firsts == PALETTE[:3]


@pytest.mark.parametrize("layout", ["roboflow-folders", "roboflow-csv", "course"])
def test_registry_routes_a_path_to_the_folder_dataset(tmp_path, layout):
    root = tmp_path / layout
    if layout == "roboflow-csv":
        for split in ("train", "valid", "test"):
            write_csv_split(root / split, ["A", "B"], {f"{split}-a.jpg": "A", f"{split}-b.jpg": "B"})
    else:
        class_folders(root, {k: v for k, v in WIKIART.items() if layout != "course" or k != "valid"})
    for split in ("train", "valid", "test"):
        ds = registry.dataset(str(root), split=split, image_size=SIZE)
        image, label = ds[0]
        assert image.shape == (3, SIZE, SIZE) and 0 <= image.min() and image.max() <= 1
        assert isinstance(label, int) and 0 <= label < len(ds.classes)
