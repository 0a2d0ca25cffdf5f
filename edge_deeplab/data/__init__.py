"""Datasets: PASCAL VOC 2012 (+SBD), Cityscapes, plain image/mask folders, procedural synthetic.

Example:
    >>> from edge_deeplab.data import load_dataset          # doctest: +SKIP
    >>> ds = load_dataset("voc", "/data/VOCdevkit", "val")  # doctest: +SKIP
    >>> image, mask = ds.read(0)                            # doctest: +SKIP
"""

from edge_deeplab.core.pixels import IGNORE_LABEL
from edge_deeplab.data.datasets import (
                                        DATASET_NAMES,
                                        SegmentationDataset,
                                        load_cityscapes,
                                        load_dataset,
                                        load_folder,
                                        load_voc,
                                        select_classes,
)
from edge_deeplab.data.masks import (
                                        CITYSCAPES_CLASSES,
                                        CITYSCAPES_ID_TO_TRAINID,
                                        read_mask,
                                        write_index_png,
)

__all__ = [
    "DATASET_NAMES", "SegmentationDataset", "load_dataset", "load_voc", "load_cityscapes",
    "load_folder", "select_classes", "read_mask", "write_index_png",
    "IGNORE_LABEL", "CITYSCAPES_CLASSES", "CITYSCAPES_ID_TO_TRAINID",
]
