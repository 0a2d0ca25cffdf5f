"""Dataset loaders: VOC / Cityscapes / folder layouts, class subsets, binary masks, validation."""

import numpy as np
import pytest
from PIL import Image

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import read_image_rgb
from edge_deeplab.data import CITYSCAPES_ID_TO_TRAINID, load_dataset, read_mask, write_index_png
from tests.support.cli import assert_one_line_error
from tests.support.data_trees import (
    make_cityscapes_tree,
    make_folder_tree,
    make_voc_tree,
    save_gray_png,
    save_palette_png,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- VOC ------------------------------------------------------------------------------------


def test_voc_reads_palette_indices_not_colours(tmp_path, rng):
    voc, masks = make_voc_tree(tmp_path, rng)
    ds = load_dataset("voc", voc, "val")
    assert ds.num_classes == 21 and ds.labels[15] == "person" and ds.ignore_label == 255
    assert len(ds) == 3
    for i, stem in enumerate(ds.stems):
        image, mask = ds.read(i)
        assert image.dtype == np.uint8 and image.shape == masks[stem].shape + (3,)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, masks[stem])
        assert (mask == 255).any()  # object borders survive as ignore
    # The file really is a palette PNG whose colours are not the indices.
    with Image.open(ds.mask_path(0)) as im:
        assert im.mode == "P"
        assert np.asarray(im.convert("RGB")).max() > 20


@pytest.mark.parametrize("where", ["voc2012", "devkit", "parent"])
def test_voc_accepts_devkit_or_parent(tmp_path, rng, where):
    voc, _ = make_voc_tree(tmp_path, rng)
    d = {"voc2012": voc, "devkit": voc.parent, "parent": voc.parent.parent}[where]
    assert len(load_dataset("voc", d, "trainval")) == 6


def test_voc_train_aug_uses_sbd_masks(tmp_path, rng):
    voc, masks = make_voc_tree(tmp_path, rng)
    aug = voc / "SegmentationClassAug"
    aug.mkdir()
    stems = sorted(masks)
    for s in stems:
        save_gray_png(aug / f"{s}.png", masks[s])  # SBD aug masks are grayscale
    lines = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png" for s in stems[:4]]
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(lines) + "\n")
    ds = load_dataset("voc", voc, "train_aug")
    assert ds.stems == tuple(stems[:4])
    assert ds.mask_path(0).parent.name == "SegmentationClassAug"
    np.testing.assert_array_equal(ds.read(1)[1], masks[stems[1]])


def test_voc_missing_split(tmp_path, rng):
    voc, _ = make_voc_tree(tmp_path, rng)
    with pytest.raises(EdgeDeeplabError, match="list file not found"):
        load_dataset("voc", voc, "test")
    with pytest.raises(EdgeDeeplabError, match="SegmentationClassAug"):
        load_dataset("voc", voc, "train_aug")
    with pytest.raises(EdgeDeeplabError, match="no PASCAL VOC"):
        load_dataset("voc", tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages", "val")


# -- class subsets ---------------------------------------------------------------------------


def test_voc_class_subset_with_background(tmp_path, rng):
    voc, masks = make_voc_tree(tmp_path, rng)
    ds = load_dataset("voc", voc, "trainval", classes=("background", "person"))
    assert ds.labels == ("background", "person") and ds.num_classes == 2
    for i, stem in enumerate(ds.stems):
        m = masks[stem]
        expect = np.where(m == 255, 255, np.where(m == 15, 1, 0))
        np.testing.assert_array_equal(ds.read_mask(i), expect)


def test_class_subset_without_background_ignores_others(tmp_path, rng):
    voc, masks = make_voc_tree(tmp_path, rng)
    ds = load_dataset("voc", voc, "val", classes="cat,person")
    assert ds.labels == ("cat", "person")
    m = masks[ds.stems[0]]
    expect = np.full(m.shape, 255)
    expect[m == 8] = 0
    expect[m == 15] = 1
    np.testing.assert_array_equal(ds.read_mask(0), expect)
    with pytest.raises(EdgeDeeplabError, match="unknown class"):
        load_dataset("voc", voc, "val", classes=("background", "unicorn"))
    with pytest.raises(EdgeDeeplabError, match="first"):
        load_dataset("voc", voc, "val", classes=("person", "background"))


# -- Cityscapes ------------------------------------------------------------------------------


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path, rng):
    root, masks = make_cityscapes_tree(tmp_path, rng)
    ds = load_dataset("cityscapes", root, "val")
    assert ds.num_classes == 19 and ds.labels[0] == "road" and ds.labels[18] == "bicycle"
    assert len(ds) == 2 and ds.stems[0].startswith("aachen_")
    table = np.full(256, 255)
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        table[k] = v
    for i, stem in enumerate(ds.stems):
        image, m = ds.read(i)
        np.testing.assert_array_equal(m, table[masks[stem]])
    # Spot-check the official table.
    assert [CITYSCAPES_ID_TO_TRAINID[k] for k in (7, 8, 11, 24, 26, 33, 0, 6, 9, 29, 30)] == \
        [0, 1, 2, 11, 13, 18, 255, 255, 255, 255, 255]
    assert sorted(v for v in CITYSCAPES_ID_TO_TRAINID.values() if v != 255) == list(range(19))


def test_cityscapes_label_train_ids_fallback(tmp_path, rng):
    root, masks = make_cityscapes_tree(tmp_path, rng, cities=("ulm",))
    stem = next(iter(masks))
    gt = root / "gtFine" / "val" / "ulm"
    (gt / f"{stem}_gtFine_labelIds.png").unlink()
    train_ids = np.resize(np.array([0, 5, 18, 255], np.uint8), (16, 34))
    save_gray_png(gt / f"{stem}_gtFine_labelTrainIds.png", train_ids)
    ds = load_dataset("cityscapes", root, "val")
    np.testing.assert_array_equal(ds.read(0)[1], train_ids)


def test_cityscapes_errors(tmp_path, rng):
    root, masks = make_cityscapes_tree(tmp_path, rng)
    with pytest.raises(EdgeDeeplabError, match="split 'train' not found"):
        load_dataset("cityscapes", root, "train")
    stem = sorted(masks)[0]
    city = stem.split("_")[0]
    save_gray_png(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png",
                  np.full((16, 34), 40, np.uint8))
    with pytest.raises(EdgeDeeplabError, match=r"labelIds\.png has labels 40"):
        load_dataset("cityscapes", root, "val").validate_all()


# -- folder ----------------------------------------------------------------------------------


def test_folder_any_extension_splits_and_labels(tmp_path, rng):
    root, masks = make_folder_tree(tmp_path / "f", rng, n=6)
    tr = load_dataset("folder", root, "train")
    va = load_dataset("folder", root, "val")
    assert tr.labels[0] == "background" and tr.num_classes == 4
    assert len(tr) == 3 and len(va) == 3 and not set(tr.stems) & set(va.stems)
    assert {tr.image_path(i).suffix for i in range(3)} == {".jpg", ".png", ".bmp"}
    for ds in (tr, va):
        for i, stem in enumerate(ds.stems):
            np.testing.assert_array_equal(ds.read(i)[1], masks[stem])
    with pytest.raises(EdgeDeeplabError, match="split file not found"):
        load_dataset("folder", root, "test")
    with pytest.raises(EdgeDeeplabError, match="disagrees"):
        load_dataset("folder", root, "val", num_classes=7)


def test_folder_without_split_files_uses_all_and_infers_classes(tmp_path, rng, capsys):
    root, masks = make_folder_tree(tmp_path / "f", rng, n=4, labels=False, split_files=False)
    ds = load_dataset("folder", root, "val")
    assert ds.stems == tuple(sorted(masks))
    top = max(int(m[m != 255].max()) for m in masks.values())
    assert ds.num_classes == top + 1
    assert "found" in capsys.readouterr().err
    assert load_dataset("folder", root, "val", num_classes=6).num_classes == 6


def test_folder_binary_masks(tmp_path, rng):
    root = tmp_path / "b"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    m = np.zeros((20, 24), np.uint8)
    m[5:15, 4:12] = 255
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "images" / "a.jpg")
    save_gray_png(root / "masks" / "a.png", m)
    ds = load_dataset("folder", root, binary=True)
    assert ds.num_classes == 2 and ds.labels == ("background", "foreground")
    np.testing.assert_array_equal(ds.read(0)[1], (m == 255).astype(np.uint8))
    # Without --binary, 255 is the ignore label and nothing else is foreground.
    plain = load_dataset("folder", root, num_classes=2)
    assert (plain.read(0)[1] == 255).sum() == (m == 255).sum()
    m[0, 0] = 128
    save_gray_png(root / "masks" / "a.png", m)
    with pytest.raises(EdgeDeeplabError, match=r"a\.png has labels 128; expected 0, 1 or 255"):
        ds.read(0)
    with pytest.raises(EdgeDeeplabError, match="--binary"):
        load_dataset("voc", root, binary=True)


# -- validation / errors -------------------------------------------------------------------


def test_missing_mask(tmp_path, rng):
    root, _ = make_folder_tree(tmp_path / "f", rng, n=4)
    (root / "masks" / "img003.png").unlink()
    with pytest.raises(EdgeDeeplabError) as e:
        load_dataset("folder", root, "val")
    assert_one_line_error(e, "mask not found", "img003")
    ds = load_dataset("folder", root, "val", skip_bad=True)
    assert ds.stems == ("img002",) and len(ds.skipped) == 1


def test_size_mismatch(tmp_path, rng):
    root, masks = make_folder_tree(tmp_path / "f", rng, n=4)
    save_gray_png(root / "masks" / "img002.png", np.zeros((7, 9), np.uint8))
    ds = load_dataset("folder", root, "val")
    with pytest.raises(EdgeDeeplabError) as e:
        ds.read(0)
    assert_one_line_error(e, "size mismatch", "img002", "9x7")


def test_labels_out_of_range(tmp_path, rng):
    root, masks = make_folder_tree(tmp_path / "f", rng, n=4, num_classes=4)
    m = masks["img003"].copy()
    m[0, 0], m[1, 1] = 9, 200
    save_gray_png(root / "masks" / "img003.png", m)
    ds = load_dataset("folder", root, "val")
    with pytest.raises(EdgeDeeplabError) as e:
        ds.validate_all()
    assert_one_line_error(e, "img003.png has labels 9, 200", prefix="mask ")
    assert "[0, 4)" in str(e.value)


def test_corrupt_and_colour_files(tmp_path, rng):
    root, masks = make_folder_tree(tmp_path / "f", rng, n=6, exts=(".jpg",))
    (root / "images" / "img003.jpg").write_bytes(b"not a jpeg at all")
    data = (root / "images" / "img004.jpg").read_bytes()
    (root / "images" / "img004.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (root / "masks" / "img005.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    ds = load_dataset("folder", root, "val")
    for i, name in enumerate(("img003.jpg", "img004.jpg", "img005.png")):
        with pytest.raises(EdgeDeeplabError) as e:
            ds.read(i)
        assert_one_line_error(e, name, "cannot read")
    # A colour (RGB) mask is not an index mask.
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(EdgeDeeplabError, match="colour"):
        read_mask(tmp_path / "rgb.png")
    with pytest.raises(EdgeDeeplabError, match="image not found"):
        read_image_rgb(tmp_path / "nope.jpg")


def test_skip_bad_counts_and_validate_all(tmp_path, rng, capsys):
    root, masks = make_folder_tree(tmp_path / "f", rng, n=8, exts=(".png",))
    (root / "images" / "img005.png").write_bytes(b"junk")
    save_gray_png(root / "masks" / "img006.png", np.full((3, 3), 77, np.uint8))
    strict = load_dataset("folder", root, "val")
    with pytest.raises(EdgeDeeplabError, match="and 1 more bad items"):
        strict.validate_all()
    ds = load_dataset("folder", root, "val", skip_bad=True)
    assert len(ds) == 4
    ds.validate_all()
    assert len(ds) == 2 and ds.stems == ("img004", "img007")
    assert len(ds.skipped) == 2 and all("img00" in p for p, _ in ds.skipped)
    err = capsys.readouterr().err
    assert "skipped 2 bad item(s)" in err and err.count("\n") == 1
    assert [s for s, _, _ in ds] == ["img004", "img007"]


def test_unknown_dataset_and_missing_dir(tmp_path):
    with pytest.raises(EdgeDeeplabError, match="unknown dataset"):
        load_dataset("coco", tmp_path)
    with pytest.raises(EdgeDeeplabError, match="not found"):
        load_dataset("folder", tmp_path / "nope")
    with pytest.raises(EdgeDeeplabError, match="needs --data-dir"):
        load_dataset("voc")
    with pytest.raises(EdgeDeeplabError, match="no images/"):
        load_dataset("folder", tmp_path)


def test_mask_readers_roundtrip(tmp_path):
    m = np.array([[0, 1, 2], [15, 20, 255]], np.uint8)
    write_index_png(tmp_path / "p.png", m, palette=[i % 256 for i in range(768)])
    write_index_png(tmp_path / "g.png", m)
    save_palette_png(tmp_path / "h.png", m)
    for name in ("p.png", "g.png", "h.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), m)


def test_synthetic_loads_as_folder(tmp_path):
    from edge_deeplab.data.synthetic import ensure_synthetic

    root = ensure_synthetic(tmp_path / "syn", num_train=2, num_val=2, size=32)
    ds = load_dataset("synthetic", root, "val")
    assert ds.name == "synthetic" and len(ds) == 2
    assert ds.labels == tuple((root / "labels.txt").read_text().split("\n")[: ds.num_classes])
    image, mask = ds.read(0)
    assert image.shape == (32, 32, 3) and mask.max() < ds.num_classes
    ds.validate_all()
