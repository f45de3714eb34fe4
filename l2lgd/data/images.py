"""Content and style images for the Neural Art task, read once on the host as square uint8 RGB.

Every image is center-cropped to a square and resized (Pillow, bicubic) to the task's size.

Content images come from one of two sources:
  * "cifar10": the first `count` images of a CIFAR-10 split (train for meta-training, test for
    held-out evaluation: the splits share no image), upsampled from 32x32. They are real
    photographs but blurry at 64x64 and more so at 128x128; the paper used 1,800 ImageNet images
    (20 for validation, 100 for testing).
  * "folder": every PNG or JPEG file in a folder (sorted by name), for a user's own photographs;
    use one folder for training and another for testing.

A style image is a file path, or an image that ships inside an installed package, written
`PACKAGE:FILE`: `skimage:ihc.png` is scikit-image's immunohistochemistry micrograph (the
default training style), `skimage:hubble_deep_field.jpg` the Hubble deep field (the default new
style), `matplotlib:grace_hopper.jpg` a photograph that ships with matplotlib.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from l2lgd.config import CONTENT_SOURCES
from l2lgd.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

PACKAGE_IMAGE_FOLDERS = {
    "skimage": ("data",),
    "matplotlib": ("mpl-data", "sample_data"),
}
"""Where each package keeps its sample images, relative to the package folder."""


def resolve_image_path(spec: str) -> Path:
    """The file a style-image spec names: `PACKAGE:FILE` (see the module docstring) or a path."""
    package, sep, name = spec.partition(":")
    if sep and package in PACKAGE_IMAGE_FOLDERS:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            extra = " (pip install scikit-image)" if package == "skimage" else ""
            raise DataError(f"image {spec!r} needs the package {package}, not installed{extra}")
        folder = Path(found.submodule_search_locations[0]).joinpath(*PACKAGE_IMAGE_FOLDERS[package])
        path = folder / name
        if not path.is_file():
            available = sorted(p.name for p in folder.glob("*") if p.suffix in IMAGE_SUFFIXES)
            raise DataError(f"{package} ships no image {name!r}; it has: {', '.join(available)}")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"image file not found: {spec}")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); grayscale and RGBA are converted (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None


def square_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> (size, size, 3): the central square, resized (bicubic)."""
    from PIL import Image

    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), np.uint8)


def load_style_image(spec: str, size: int) -> np.ndarray:
    """The style image `spec` names, uint8 (size, size, 3)."""
    return square_image(read_rgb(resolve_image_path(spec)), size)


def load_content_images(
    source: str, size: int, count: int, *, cifar_images: np.ndarray | None = None, folder: str = ""
) -> np.ndarray:
    """`count` content images, uint8 (count, size, size, 3), read-only.

    Args:
      source: "cifar10" (upsample `cifar_images`, one split of CIFAR-10) or "folder".
      size: side of the square images.
      count: how many to keep: the first ones (in file-name order for a folder).
      cifar_images: for "cifar10", uint8 (N, 32, 32, 3).
      folder: for "folder", the folder of PNG/JPEG files.

    Raises:
      DataError: an unknown source, a missing or empty folder, fewer images than `count`, or an
        unreadable image.
    """
    if source == "cifar10":
        if cifar_images is None:
            raise DataError("content source cifar10 needs CIFAR-10 images")
        originals = list(cifar_images[:count])
        origin = "the CIFAR-10 split"
    elif source == "folder":
        directory = Path(folder).expanduser()
        if not folder or not directory.is_dir():
            raise DataError(f"content image folder not found: {folder!r} (task.content_dir)")
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        originals = [read_rgb(path) for path in files[:count]]
        origin = f"{directory} (PNG or JPEG files)"
    else:
        raise DataError(f"unknown content source {source!r}; valid: {', '.join(CONTENT_SOURCES)}")
    if len(originals) < count:
        raise DataError(
            f"{origin} holds {len(originals)} images, fewer than task.num_content_images={count}"
        )
    images = np.stack([square_image(image, size) for image in originals])
    images.flags.writeable = False  # shared by every task built from the cache
    return images
