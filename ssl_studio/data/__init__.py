"""Images in, as one uint8 tensor in memory with labels, captions and a split (no Qt).

``load_imageset(cfg.data, seed)`` is the one entry point: it reads
``data.source`` (shapes, digits, folder:PATH, cifar:PATH) and returns an
ImageSet; every user-facing failure is a DataError naming the field.
"""

from ssl_studio.data.imageset import DataError, ImageSet
from ssl_studio.data.sources import augment_defaults, load_imageset

__all__ = ["DataError", "ImageSet", "augment_defaults", "load_imageset"]
