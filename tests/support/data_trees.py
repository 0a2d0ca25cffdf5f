"""Builders of small on-disk datasets (VOC, Cityscapes, folder layouts) and a naive mIoU reference.

Everything here is written with PIL/numpy directly, independently of ``edge_deeplab.data``, so the
tests compare the package against an independent path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette():
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def save_palette_png(path, mask):
    im = Image.fromarray(np.asarray(mask, np.uint8), mode="L").convert("P")
    im.putpalette(voc_palette())
    im.save(path)


def save_gray_png(path, mask):
    Image.fromarray(np.asarray(mask, np.uint8), mode="L").save(path)


def random_scene(rng, h, w, num_classes, border=True, ignore_frac=0.0):
    """A mask of random rectangles of classes 1..K-1 on background 0, with 255 object borders."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 5)):
        c = int(rng.integers(1, num_classes))
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        y1, x1 = int(rng.integers(y0 + 3, h)), int(rng.integers(x0 + 3, w))
        m[y0:y1, x0:x1] = c
        if border:
            m[y0, x0:x1] = 255
            m[y1 - 1, x0:x1] = 255
            m[y0:y1, x0] = 255
            m[y0:y1, x1 - 1] = 255
    if ignore_frac:
        m[rng.random((h, w)) < ignore_frac] = 255
    return m


def noisy_prediction(rng, gt, num_classes, flip_frac=0.2):
    """``gt`` with ``flip_frac`` of its pixels replaced by random classes (255 -> random class)."""
    p = gt.copy()
    p[p == 255] = rng.integers(0, num_classes, size=int((p == 255).sum()))
    noise = rng.random(gt.shape) < flip_frac
    p[noise] = rng.integers(0, num_classes, size=int(noise.sum()))
    return p


def image_for(mask, rng, colours=None, noise=20):
    """An RGB image whose colours follow the mask: ``colours[class]`` (an RGB triple per class; by
    default the VOC palette) plus uniform noise in ``[-noise, noise)`` (none drawn for 0)."""
    table = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
    for c, rgb in (colours or {}).items():
        table[c] = rgb
    base = table[mask].astype(np.int16)
    if noise:
        base = base + rng.integers(-noise, noise, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def make_voc_tree(root, rng, n_train=3, n_val=3, sizes=((40, 56), (48, 32), (36, 36))):
    """``root/VOCdevkit/VOC2012`` with JPEGImages, palette SegmentationClass and ImageSets.

    Returns ``(voc_root, {stem: mask})``.
    """
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    masks = {}
    splits = {"train": [], "val": []}
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        stem = f"2007_{i:06d}"
        h, w = sizes[i % len(sizes)]
        m = random_scene(rng, h, w, 21)
        Image.fromarray(image_for(m, rng)).save(voc / "JPEGImages" / f"{stem}.jpg", quality=95)
        save_palette_png(voc / "SegmentationClass" / f"{stem}.png", m)
        masks[stem] = m
        splits[split].append(stem)
    for s, stems in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{s}.txt").write_text("\n".join(stems) + "\n")
    (voc / "ImageSets" / "Segmentation" / "trainval.txt").write_text(
        "\n".join(splits["train"] + splits["val"]) + "\n")
    return voc, masks


def _ignore_dotted_scene(rng, h, w, num_classes):
    return random_scene(rng, h, w, num_classes, border=False, ignore_frac=0.05)


def make_folder_tree(root, rng, n=5, num_classes=4, exts=(".jpg", ".png", ".bmp"), labels=True,
                     split_files=True, sizes=((30, 40), (24, 24), (40, 28)), *, n_train=None,
                     scene=None, colours=None, noise=20, images=None):
    """``root/images`` + ``root/masks`` (grayscale index PNGs) [+ labels.txt, train/val.txt].

    Image ``i`` is ``sizes[i % len(sizes)]`` (H, W), saved as ``img<i>`` with ``exts[i % len(exts)]``.
    Its mask is ``scene(rng, h, w, num_classes)``, by default random rectangles of classes
    1..num_classes-1 on background 0 with 5% ignore (255) pixels, and the image is decided by the
    mask's colours (:func:`image_for` with ``colours`` and ``noise``). ``images`` (uint8 RGB arrays,
    e.g. natural or generated photos) replace those images (``n`` and ``sizes`` then come from
    them). ``split_files``: ``train.txt`` lists the first ``n_train`` stems (default ``n // 2``),
    ``val.txt`` the rest (an empty split gets no file). ``labels``: ``True`` writes background,
    thing1, ...; a sequence writes those names; ``False`` none. Returns ``(root, {stem: mask})``.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if images is not None:
        images = list(images)
        n, sizes = len(images), [im.shape[:2] for im in images]
    masks = {}
    for i in range(n):
        stem = f"img{i:03d}"
        h, w = sizes[i % len(sizes)]
        m = (scene or _ignore_dotted_scene)(rng, h, w, num_classes)
        img = images[i] if images is not None else image_for(np.where(m == 255, 0, m), rng, colours,
                                                             noise)
        Image.fromarray(img).save(root / "images" / f"{stem}{exts[i % len(exts)]}")
        save_gray_png(root / "masks" / f"{stem}.png", m)
        masks[stem] = m
    stems = sorted(masks)
    k = n // 2 if n_train is None else n_train
    for split, part in (("train", stems[:k]), ("val", stems[k:])):
        if split_files and part:
            (root / f"{split}.txt").write_text("\n".join(part) + "\n")
    if labels:
        names = ["background"] + [f"thing{i}" for i in range(1, num_classes)] if labels is True else labels
        (root / "labels.txt").write_text("\n".join(names) + "\n")
    return root, masks


def naive_miou(pairs, num_classes, ignore=255):
    """Reference mIoU by explicit per-pixel loops over ``[(pred, gt), ...]``, one global count."""
    tp = [0] * num_classes
    fp = [0] * num_classes
    fn = [0] * num_classes
    correct = total = 0
    for pred, gt in pairs:
        for p, g in zip(np.asarray(pred).ravel().tolist(), np.asarray(gt).ravel().tolist()):
            if g == ignore:
                continue
            total += 1
            if p == g:
                tp[g] += 1
                correct += 1
            else:
                fn[g] += 1
                if 0 <= p < num_classes:
                    fp[p] += 1
    ious = []
    per_class = []
    for c in range(num_classes):
        u = tp[c] + fp[c] + fn[c]
        per_class.append(tp[c] / u if u else None)
        if u:
            ious.append(tp[c] / u)
    return sum(ious) / len(ious), per_class, correct / total


def per_image_mean_miou(pairs, num_classes, ignore=255):
    """The WRONG way (mean of per-image mIoUs), used to show the metric is not that."""
    vals = [naive_miou([pg], num_classes, ignore)[0] for pg in pairs]
    return sum(vals) / len(vals)


def make_cityscapes_tree(root, rng, split="val", cities=("aachen", "bonn"), per_city=1, size=(16, 34)):
    """Cityscapes layout whose labelIds masks contain every id 0..33 (and random placement)."""
    root = Path(root)
    out = {}
    for city in cities:
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for k in range(per_city):
            stem = f"{city}_{k:06d}_000019"
            h, w = size
            ids = np.resize(np.arange(34, dtype=np.uint8), h * w)
            rng.shuffle(ids)
            m = ids.reshape(h, w)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            save_gray_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", m)
            out[stem] = m
    return root, out


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("os", "np", "Image", "Path", "annotations")]
