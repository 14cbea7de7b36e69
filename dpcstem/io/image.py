"""Ordinary image files (PNG, JPEG, BMP, ...): one segment image each, read with Pillow.

A colour image whose channels are equal is read as grey; any other colour image is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UnreadableFileError
from ._common import grey


def read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = np.asarray(im)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise UnreadableFileError(f"{path}: not a readable image file ({exc})") from None
    return grey(image, path)
