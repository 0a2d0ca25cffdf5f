"""Segmentation datasets on disk: PASCAL VOC 2012 (+SBD aug), Cityscapes, plain folders, synthetic.

Every loader returns a :class:`SegmentationDataset`: an ordered list of ``(stem, image, mask)``
files plus a lookup table that maps the raw mask values to *train ids* ``0..K-1`` or the ignore
label 255. Reading an item validates it (unreadable/corrupt file, image/mask size mismatch, labels
outside ``[0, K)`` other than 255) and raises :class:`EdgeDeeplabError` naming the file;
:meth:`SegmentationDataset.validate_all` checks the whole split up front (train and eval call it so
problems surface before hours of training). With ``skip_bad=True`` bad items are dropped instead
and counted in :attr:`SegmentationDataset.skipped`.

Layouts:

* ``voc``: ``VOC2012/JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNGs, read as
  indices), ``ImageSets/Segmentation/{train,val,trainval}.txt``; split ``train_aug`` uses SBD's
  ``SegmentationClassAug/`` with ``ImageSets/Segmentation/train_aug.txt`` (or ``train_aug.txt`` at
  the root / inside ``SegmentationClassAug``). ``data_dir`` may be ``VOCdevkit/VOC2012``,
  ``VOCdevkit`` or the folder holding ``VOCdevkit``. 21 classes, 255 = ignore (object borders).
* ``cityscapes``: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` +
  ``gtFine/{split}/{city}/*_gtFine_labelIds.png`` mapped to the 19 train ids (official table,
  others 255); ``*_gtFine_labelTrainIds.png`` is used as-is when the labelIds file is absent.
* ``folder``: ``images/`` + ``masks/`` with the same stems (masks are index PNGs; images any common
  extension); ``train.txt`` / ``val.txt`` (one stem per line) select a split, else all files;
  ``labels.txt`` (one class name per line) gives the classes. ``binary=True`` reads 0/255 (or 0/1)
  masks as 2 classes, background 0 and foreground 1 (so 255 is foreground there, not ignore).
* ``synthetic``: generated on first use by :mod:`edge_deeplab.data.synthetic` in folder layout.

Example:
    >>> import numpy as np, tempfile, os
    >>> from edge_deeplab.data.masks import write_index_png
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(f"{d}/images"); os.makedirs(f"{d}/masks")
    >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(f"{d}/images/a.jpg")
    >>> _ = write_index_png(f"{d}/masks/a.png", np.ones((4, 6), np.uint8))
    >>> ds = load_dataset("folder", d, num_classes=2)
    >>> len(ds), ds.stems, ds.read(0)[1].shape
    (1, ('a',), (4, 6))
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.contract.semantics import VOC_CLASSES
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import read_image_rgb
from edge_deeplab.core.pixels import IGNORE_LABEL
from edge_deeplab.data.labels import check_label_names
from edge_deeplab.data.masks import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_ID_TO_TRAINID,
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    find_with_extensions,
    read_mask,
)

DATASET_NAMES = ("synthetic", "voc", "cityscapes", "folder")
INVALID = -1


class SegmentationDataset:
    """An ordered, validated list of image/mask pairs of one split.

    Attributes:
        name: ``"voc"``, ``"cityscapes"``, ``"folder"`` or ``"synthetic"``.
        split: split name.
        root: dataset root directory.
        num_classes: number of classes ``K`` (after any class subset).
        labels: class names (tuple of ``K``).
        ignore_label: 255.
        stems: item ids (tuple), e.g. ``"2007_000032"``.
        skipped: ``[(path, reason), ...]`` of items dropped with ``skip_bad=True``.
        lut: ``int16[256]`` raw mask value -> train id (255 ignore, -1 invalid).
    """

    ignore_label = IGNORE_LABEL

    def __init__(self, name: str, split: str, root, items: Sequence[Tuple[str, Path, Path]],
                 labels: Sequence[str], lut: np.ndarray, *, skip_bad: bool = False,
                 skipped: Optional[List[Tuple[str, str]]] = None, binary: bool = False,
                 note: Optional[str] = None):
        self.name = name
        self.split = split
        self.root = Path(root) if root is not None else None
        self._items = list(items)
        self.labels = tuple(labels)
        self.num_classes = len(self.labels)
        self.lut = np.asarray(lut, dtype=np.int16)
        self.skip_bad = skip_bad
        self.skipped: List[Tuple[str, str]] = list(skipped or [])
        self.binary = binary
        self.note = note
        self._validated = False
        if not self._items:
            raise EdgeDeeplabError(f"{name} dataset split {split!r} at {root} has no images")

    # -- list-like API ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"SegmentationDataset({self.name!r}, split={self.split!r}, {len(self)} images, "
                f"{self.num_classes} classes, root={str(self.root)!r})")

    @property
    def stems(self) -> Tuple[str, ...]:
        return tuple(s for s, _, _ in self._items)

    def image_path(self, i: int) -> Path:
        return self._items[i][1]

    def mask_path(self, i: int) -> Path:
        return self._items[i][2]

    def map_mask(self, raw: np.ndarray, path="mask") -> np.ndarray:
        """Maps raw mask values to train ids; raises if any value is not a valid label."""
        mapped = self.lut[raw]
        if (mapped == INVALID).any():
            bad = np.unique(raw[mapped == INVALID])
            shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
            what = "0, 1 or 255 (binary)" if self.binary else \
                f"[0, {self._raw_classes_hint()}) or 255 (ignore)"
            raise EdgeDeeplabError(f"mask {path} has labels {shown}; expected {what}")
        return mapped.astype(np.uint8)

    def _raw_classes_hint(self) -> int:
        valid = np.nonzero((self.lut != INVALID) & (np.arange(256) != IGNORE_LABEL))[0]
        return int(valid.max()) + 1 if valid.size else 0

    def read(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Reads item ``i``: ``(uint8 RGB (H, W, 3), uint8 (H, W) train ids / 255)``.

        Raises:
            EdgeDeeplabError: unreadable/corrupt image or mask, size mismatch, invalid labels.
        """
        stem, ip, mp = self._items[i]
        image = read_image_rgb(ip)
        raw = read_mask(mp)
        if raw.shape != image.shape[:2]:
            raise EdgeDeeplabError(
                f"size mismatch: image {ip} is {image.shape[1]}x{image.shape[0]} but mask {mp} is "
                f"{raw.shape[1]}x{raw.shape[0]}")
        return image, self.map_mask(raw, mp)

    def read_mask(self, i: int) -> np.ndarray:
        """Reads and maps only the mask of item ``i`` (``uint8 (H, W)``)."""
        mp = self._items[i][2]
        return self.map_mask(read_mask(mp), mp)

    def __iter__(self) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
        """Yields ``(stem, image, mask)``; with ``skip_bad`` bad items are skipped and recorded."""
        for i in range(len(self)):
            try:
                image, mask = self.read(i)
            except EdgeDeeplabError as e:
                if not self.skip_bad:
                    raise
                self.skipped.append((str(self._items[i][1]), str(e)))
                continue
            yield self._items[i][0], image, mask

    def _check(self, i: int) -> Tuple[Optional[str], int]:
        """``(error or None, labelled pixels)`` of item ``i``."""
        try:
            _, mask = self.read(i)
        except EdgeDeeplabError as e:
            return str(e), 0
        return None, int(np.count_nonzero(mask != IGNORE_LABEL))

    def validate_all(self, workers: int = 4, verbose: bool = True) -> "SegmentationDataset":
        """Reads every image and mask once, checking everything :meth:`read` checks.

        Without ``skip_bad`` the first bad item (in order) raises :class:`EdgeDeeplabError`. With
        ``skip_bad`` bad items are removed (indices shift), recorded in :attr:`skipped`, and a
        one-line count is printed to stderr. Returns ``self``.
        """
        if self._validated:
            return self
        with ThreadPoolExecutor(max(1, workers)) as ex:
            checked = list(ex.map(self._check, range(len(self))))
        errors = [e for e, _ in checked]
        labelled = sum(n for _, n in checked)
        bad = [(i, e) for i, e in enumerate(errors) if e is not None]
        if bad and not self.skip_bad:
            n = len(bad)
            raise EdgeDeeplabError(bad[0][1] + (f" (and {n - 1} more bad items; --skip-bad skips them)"
                                                if n > 1 else ""))
        if bad:
            bad_idx = {i for i, _ in bad}
            self.skipped += [(str(self._items[i][1]), e) for i, e in bad]
            self._items = [it for j, it in enumerate(self._items) if j not in bad_idx]
        self._validated = True
        if bad and verbose:  # (items skipped at load time were reported then)
            print(self.skipped_summary(), file=sys.stderr)
        if not self._items:
            raise EdgeDeeplabError(f"{self.name} split {self.split!r}: every item is bad "
                                   f"(first: {self.skipped[0][1]})")
        if labelled == 0:  # nothing to learn from or score: loss 0, mIoU n/a
            raise EdgeDeeplabError(
                f"{self.name} split {self.split!r} at {self.root} has no labelled pixel: every "
                f"mask pixel of its {len(self)} images is {IGNORE_LABEL} (ignore)")
        return self

    def skipped_summary(self) -> str:
        if not self.skipped:
            return f"{self.name}/{self.split}: 0 bad items skipped"
        return (f"{self.name}/{self.split}: skipped {len(self.skipped)} bad item(s), e.g. "
                f"{self.skipped[0][1]}")

    def subset(self, n: int) -> "SegmentationDataset":
        """The first ``n`` items (same classes), e.g. for ``--max-images``."""
        ds = SegmentationDataset.__new__(SegmentationDataset)
        ds.__dict__.update(self.__dict__)
        ds._items = self._items[: max(0, int(n))]
        ds.skipped = list(self.skipped)
        return ds


# ---------------------------------------------------------------------------------------------
# Label tables


def identity_lut(num_classes: int, ignore: bool = True) -> np.ndarray:
    lut = np.full(256, INVALID, np.int16)
    lut[: min(num_classes, 256)] = np.arange(min(num_classes, 256))
    if ignore:
        lut[IGNORE_LABEL] = IGNORE_LABEL
    return lut


def binary_lut() -> np.ndarray:
    """0 -> background 0, 1 or 255 -> foreground 1; anything else is invalid."""
    lut = np.full(256, INVALID, np.int16)
    lut[0] = 0
    lut[1] = 1
    lut[255] = 1
    return lut


def cityscapes_lut() -> np.ndarray:
    lut = np.full(256, INVALID, np.int16)
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        lut[k] = v
    lut[IGNORE_LABEL] = IGNORE_LABEL
    return lut


def select_classes(labels: Sequence[str], lut: np.ndarray, classes: Sequence[str]):
    """Restricts a dataset to a subset of its classes, in the given order.

    Pixels of dropped classes become ``background`` (0) when ``"background"`` is kept (it must then
    be first), else the ignore label. Returns ``(new_labels, new_lut)``.
    """
    labels = list(labels)
    classes = [c.strip() for c in classes if c.strip()]
    if not classes:
        raise EdgeDeeplabError("--classes is empty")
    if len(set(classes)) != len(classes):
        raise EdgeDeeplabError(f"--classes has duplicates: {classes}")
    lower = {n.lower(): i for i, n in enumerate(labels)}
    unknown = [c for c in classes if c.lower() not in lower]
    if unknown:
        raise EdgeDeeplabError(f"unknown class(es) {unknown}; this dataset has {labels}")
    bg_names = ("background", "bg", "_background_")
    has_bg = classes[0].lower() in bg_names
    if any(c.lower() in bg_names for c in classes[1:]):
        raise EdgeDeeplabError("'background' must be the first of --classes")
    remap = np.full(256, 0 if has_bg else IGNORE_LABEL, np.int16)  # old train id -> new id
    for new, c in enumerate(classes):
        remap[lower[c.lower()]] = new
    remap[IGNORE_LABEL] = IGNORE_LABEL
    new_lut = np.where(lut == INVALID, INVALID, remap[np.clip(lut, 0, 255)]).astype(np.int16)
    return tuple(labels[lower[c.lower()]] for c in classes), new_lut


def _read_lines(path) -> List[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeDeeplabError(f"cannot read {path}: {e}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _stem_of_line(line: str) -> str:
    # "2007_000032" or "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png"
    tok = line.split()[0]
    base = os.path.basename(tok)
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_EXTENSIONS + MASK_EXTENSIONS else base


def _unique_ids(pairs):
    """``pairs`` with each id once (first place kept), and ``{id: times listed}`` of the repeats:
    a split file naming an image twice must not weigh it twice in a mIoU or an epoch."""
    counts: dict = {}
    for p in pairs:
        counts[p[0]] = counts.get(p[0], 0) + 1
    seen, unique = set(), []
    for p in pairs:
        if p[0] not in seen:
            seen.add(p[0])
            unique.append(p)
    return unique, {s: n for s, n in counts.items() if n > 1}


def _collect(name, split, root, pairs, labels, lut, skip_bad, binary=False, note=None):
    """Builds the dataset, dealing with missing images/masks (error or skip)."""
    items, skipped = [], []
    pairs, repeated = _unique_ids(pairs)
    if repeated:
        shown = ", ".join(f"{s} x{n}" for s, n in list(repeated.items())[:5]) + \
            (" ..." if len(repeated) > 5 else "")
        print(f"warning: {name}/{split} lists {len(repeated)} id(s) more than once ({shown}); "
              f"each is used once", file=sys.stderr)
    for stem, ip, mp, missing in pairs:
        if missing:
            if not skip_bad:
                raise EdgeDeeplabError(missing)
            skipped.append((str(ip or mp or stem), missing))
            continue
        items.append((stem, Path(ip), Path(mp)))
    ds = SegmentationDataset(name, split, root, items, labels, lut, skip_bad=skip_bad,
                             skipped=skipped, binary=binary, note=note)
    if skipped:
        print(ds.skipped_summary(), file=sys.stderr)
    return ds


# ---------------------------------------------------------------------------------------------
# Loaders


def _find_voc_root(data_dir) -> Path:
    d = Path(data_dir)
    for cand in (d, d / "VOC2012", d / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise EdgeDeeplabError(
        f"no PASCAL VOC 2012 tree at {d} (expected VOCdevkit/VOC2012/JPEGImages; pass "
        f"--data-dir pointing at VOCdevkit/VOC2012 or its parent)")


def load_voc(data_dir, split="train", *, skip_bad=False) -> SegmentationDataset:
    root = _find_voc_root(data_dir)
    if split in ("train_aug", "trainaug", "aug"):
        split = "train_aug"
        mask_dir = root / "SegmentationClassAug"
        if not mask_dir.is_dir():
            raise EdgeDeeplabError(f"split train_aug needs SBD's SegmentationClassAug/ in {root}")
        cands = [root / "ImageSets" / "Segmentation" / "train_aug.txt", root / "train_aug.txt",
                 mask_dir / "train_aug.txt", root.parent / "train_aug.txt"]
    else:
        mask_dir = root / "SegmentationClass"
        if not mask_dir.is_dir() and (root / "SegmentationClassAug").is_dir():
            mask_dir = root / "SegmentationClassAug"
        if not mask_dir.is_dir():
            raise EdgeDeeplabError(f"no SegmentationClass/ in {root}")
        cands = [root / "ImageSets" / "Segmentation" / f"{split}.txt"]
    list_file = next((c for c in cands if c.is_file()), None)
    if list_file is None:
        raise EdgeDeeplabError(f"VOC split {split!r}: list file not found (looked for {cands[0]})")
    pairs = []
    img_dir = root / "JPEGImages"
    for line in _read_lines(list_file):
        stem = _stem_of_line(line)
        ip = find_with_extensions(img_dir, stem, (".jpg", ".jpeg", ".png"))
        mp = find_with_extensions(mask_dir, stem, (".png",))
        missing = None
        if ip is None:
            missing = f"image for {stem!r} (listed in {list_file}) not found in {img_dir}"
        elif mp is None:
            missing = f"mask not found: {mask_dir / (stem + '.png')}"
        pairs.append((stem, ip, mp, missing))
    return _collect("voc", split, root, pairs, VOC_CLASSES, identity_lut(21), skip_bad)


def load_cityscapes(data_dir, split="train", *, skip_bad=False) -> SegmentationDataset:
    d = Path(data_dir)
    img_root, gt_root = d / "leftImg8bit" / split, d / "gtFine" / split
    if not (d / "leftImg8bit").is_dir():
        raise EdgeDeeplabError(f"no Cityscapes tree at {d} (expected leftImg8bit/ and gtFine/)")
    if not img_root.is_dir():
        raise EdgeDeeplabError(f"Cityscapes split {split!r} not found: {img_root}")
    if not gt_root.is_dir():
        raise EdgeDeeplabError(f"Cityscapes ground truth not found: {gt_root}")
    suffix = "_leftImg8bit.png"
    pairs = []
    use_train_ids = None
    for city in sorted(p for p in img_root.iterdir() if p.is_dir()):
        for ip in sorted(city.glob(f"*{suffix}")):
            stem = ip.name[: -len(suffix)]
            mp = gt_root / city.name / f"{stem}_gtFine_labelIds.png"
            tp = gt_root / city.name / f"{stem}_gtFine_labelTrainIds.png"
            missing = None
            if mp.is_file():
                kind = False
            elif tp.is_file():
                mp, kind = tp, True
            else:
                missing, kind = f"mask not found: {mp}", None
            if kind is not None:
                if use_train_ids is None:
                    use_train_ids = kind
                elif use_train_ids != kind:
                    raise EdgeDeeplabError(
                        f"Cityscapes {gt_root} mixes labelIds and labelTrainIds masks ({mp})")
            pairs.append((stem, ip, mp, missing))
    lut = identity_lut(19) if use_train_ids else cityscapes_lut()
    return _collect("cityscapes", split, d, pairs, CITYSCAPES_CLASSES, lut, skip_bad)


def _list_stems(directory: Path, extensions) -> dict:
    out = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."):
            out.setdefault(p.stem, p)
    return out


def _infer_num_classes(pairs) -> int:
    top = 0
    for stem, ip, mp, missing in pairs:
        if missing:
            continue
        m = read_mask(mp)
        vals = np.unique(m)
        vals = vals[vals != IGNORE_LABEL]
        if vals.size:
            top = max(top, int(vals.max()))
    return top + 1


def load_folder(data_dir, split="train", *, num_classes=None, binary=False, skip_bad=False,
                name="folder") -> SegmentationDataset:
    d = Path(data_dir)
    img_dir, mask_dir = d / "images", d / "masks"
    if not img_dir.is_dir():
        raise EdgeDeeplabError(f"no images/ folder in {d} (folder datasets need images/ and masks/)")
    if not mask_dir.is_dir():
        raise EdgeDeeplabError(f"no masks/ folder in {d} (folder datasets need images/ and masks/)")
    images = _list_stems(img_dir, IMAGE_EXTENSIONS)
    masks = _list_stems(mask_dir, MASK_EXTENSIONS)
    split_file = d / f"{split}.txt"
    note = None
    if split_file.is_file():
        stems = [_stem_of_line(ln) for ln in _read_lines(split_file)]
    elif split in ("all", "", None) or not any((d / f"{s}.txt").is_file() for s in ("train", "val", "test")):
        stems = sorted(images)
        note = f"no {split}.txt in {d}: using all {len(stems)} images"
    else:
        raise EdgeDeeplabError(f"split file not found: {split_file}")
    pairs = []
    for stem in stems:
        ip, mp = images.get(stem), masks.get(stem)
        missing = None
        if ip is None:
            missing = f"image not found: {img_dir / stem}.* (listed in {split_file})"
        elif mp is None:
            missing = f"mask not found: {mask_dir / stem}.png (for image {ip})"
        pairs.append((stem, ip, mp, missing))

    labels_file = d / "labels.txt"
    file_labels = _read_lines(labels_file) if labels_file.is_file() else None
    if binary:
        if num_classes not in (None, 2):
            raise EdgeDeeplabError(f"--binary means 2 classes, got --num-classes {num_classes}")
        labels = tuple(file_labels) if file_labels and len(file_labels) == 2 else ("background", "foreground")
        lut = binary_lut()
    else:
        if file_labels is not None:
            if num_classes is not None and num_classes != len(file_labels):
                raise EdgeDeeplabError(
                    f"--num-classes {num_classes} disagrees with {labels_file} ({len(file_labels)} classes)")
            labels = check_label_names(file_labels, str(labels_file))
        else:
            if num_classes is None:
                num_classes = _infer_num_classes(pairs)
                print(f"{name}: no labels.txt or --num-classes in {d}; found {num_classes} classes "
                      f"in the masks", file=sys.stderr)
            if num_classes < 1 or num_classes > 255:
                raise EdgeDeeplabError(f"num_classes must be 1..255, got {num_classes}")
            labels = VOC_CLASSES if num_classes == 21 else tuple(f"class_{i}" for i in range(num_classes))
        lut = identity_lut(len(labels))
    return _collect(name, split, d, pairs, labels, lut, skip_bad, binary=binary, note=note)


def load_synthetic(data_dir=None, split="train", *, skip_bad=False) -> SegmentationDataset:
    from edge_deeplab.data.synthetic import ensure_synthetic

    root = ensure_synthetic(data_dir)
    return load_folder(root, split, skip_bad=skip_bad, name="synthetic")


def load_dataset(name: str, data_dir=None, split: str = "train", *, num_classes: Optional[int] = None,
                 binary: bool = False, skip_bad: bool = False,
                 classes: Optional[Sequence[str]] = None) -> SegmentationDataset:
    """Opens a dataset split.

    Args:
        name: ``"synthetic"``, ``"voc"``, ``"cityscapes"`` or ``"folder"``.
        data_dir: dataset root (optional for ``synthetic``: its default cache directory).
        split: ``"train"``, ``"val"``, ``"trainval"``, ``"train_aug"`` (VOC + SBD), ``"test"``...
        num_classes: for ``folder`` without ``labels.txt`` (else inferred from the masks); for the
            fixed-class datasets it must match (21 VOC, 19 Cityscapes) when given.
        binary: ``folder``: 0/255 masks -> background 0 / foreground 1.
        skip_bad: drop bad items (counted in ``.skipped``) instead of raising.
        classes: keep only these class names, in this order, e.g. ``("background", "person")``;
            other classes become background (if kept, first) or 255.

    Returns:
        A :class:`SegmentationDataset`.

    Raises:
        EdgeDeeplabError: unknown dataset, missing folders/files (naming them).
    """
    name = (name or "").lower()
    if name not in DATASET_NAMES:
        raise EdgeDeeplabError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if name != "synthetic":
        if data_dir is None:
            raise EdgeDeeplabError(f"dataset {name} needs --data-dir")
        if not Path(data_dir).is_dir():
            raise EdgeDeeplabError(f"data directory not found: {data_dir}")
    if binary and name != "folder":
        raise EdgeDeeplabError("--binary applies to folder datasets only")
    if name == "voc":
        ds = load_voc(data_dir, split, skip_bad=skip_bad)
    elif name == "cityscapes":
        ds = load_cityscapes(data_dir, split, skip_bad=skip_bad)
    elif name == "folder":
        ds = load_folder(data_dir, split, num_classes=num_classes, binary=binary, skip_bad=skip_bad)
    else:
        ds = load_synthetic(data_dir, split, skip_bad=skip_bad)
    if name in ("voc", "cityscapes") and num_classes is not None and num_classes != ds.num_classes \
            and not classes:
        raise EdgeDeeplabError(f"{name} has {ds.num_classes} classes, got --num-classes {num_classes}")
    if classes:
        if isinstance(classes, str):
            classes = classes.split(",")
        ds.labels, ds.lut = select_classes(ds.labels, ds.lut, classes)
        ds.num_classes = len(ds.labels)
        if num_classes is not None and num_classes != ds.num_classes:
            raise EdgeDeeplabError(
                f"--classes selects {ds.num_classes} classes but --num-classes is {num_classes}")
    return ds
