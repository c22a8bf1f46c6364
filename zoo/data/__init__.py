"""Labelled images for fine-tuning: listing, robust decoding, checking, splitting, samples.

    listing = list_files("./pets")                 # folder of class folders, or a CSV
    dataset = check_listing(listing, resize=256)   # decode once (parallel), skip bad files
    dataset = load_dataset("./shards", resize=256) # the same, or what a data source reads
    train, val = stratified_split(dataset.labels, 0.2, seed=0)
    ImageSamples(dataset, train, Preprocessing.from_info(info), train=True)

Nothing here imports torch at module level.
"""

from __future__ import annotations

from zoo.data.check import (
    DEFAULT_MAX_BAD_FRACTION,
    BadFile,
    Duplicate,
    ImageDataset,
    Sample,
    check_listing,
    dataset_digest,
    decoded_cache_dir,
)
from zoo.data.decode import ImageDecodeError, decode_image, resize_for_eval, to_rgb
from zoo.data.load import data_source_for, load_dataset, read_image
from zoo.data.preprocess import Preprocessing, eval_crop, train_crop
from zoo.data.samples import ImageSamples, load_resized
from zoo.data.sources import Listing, list_files, read_manifest, scan_folder
from zoo.data.split import Split, split_dataset, stratified_split

__all__ = [
    "DEFAULT_MAX_BAD_FRACTION",
    "BadFile",
    "Duplicate",
    "ImageDataset",
    "ImageDecodeError",
    "ImageSamples",
    "Listing",
    "Preprocessing",
    "Sample",
    "Split",
    "check_listing",
    "data_source_for",
    "dataset_digest",
    "decode_image",
    "decoded_cache_dir",
    "eval_crop",
    "list_files",
    "load_dataset",
    "load_resized",
    "read_image",
    "read_manifest",
    "resize_for_eval",
    "scan_folder",
    "split_dataset",
    "stratified_split",
    "to_rgb",
    "train_crop",
]
