"""MNIST-format datasets (Fashion-MNIST, MNIST, KMNIST) from their four IDX files.

The files are read from ``data.root`` with torchvision's IDX reader, gzipped or not, and
never downloaded. The official 10,000 test images are the test split; the search's
validation split is carved from the 60,000 training images (``trials.data``).

On Debian and Ubuntu, Fashion-MNIST comes from the distribution:
``apt-get install dataset-fashion-mnist`` puts the four files under
``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import torch

from trials.errors import UserError

IDX_SETS = ("fashion_mnist", "mnist", "kmnist")
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
DEBIAN_ROOTS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
FLIP = {"fashion_mnist": True, "mnist": False, "kmnist": False}  # clothes mirror; digits and kana do not


def expected_files() -> str:
    return ", ".join(f"{f}[.gz]" for f in FILES.values())


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (root / name).is_file():
            return root / name
    return None


def _read(path: Path, reader) -> torch.Tensor:
    """torchvision's reader takes an uncompressed file: a .gz is inflated to a temp file."""
    if path.suffix != ".gz":
        return reader(str(path))
    with tempfile.NamedTemporaryFile(suffix=".idx") as tmp:
        with gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, tmp)
        tmp.flush()
        return reader(tmp.name)


def hint(name: str) -> str:
    debian = DEBIAN_ROOTS.get(name)
    return f" (on Debian/Ubuntu: apt-get install dataset-fashion-mnist, then data.root: {debian})" if debian else ""


def read_idx_set(name: str, root: str | None) -> dict[str, torch.Tensor]:
    """The four tensors of an MNIST-format set: train_x/test_x (N, 1, 28, 28) uint8,
    train_y/test_y (N,) int64. A missing root or file is a UserError naming the files."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    if not root or not Path(root).is_dir():
        raise UserError(f"data.root: '{name}' needs a folder holding {expected_files()}; got {root!r}{hint(name)}")
    found = {key: _find(Path(root), stem) for key, stem in FILES.items()}
    missing = [FILES[k] for k, p in found.items() if p is None]
    if missing:
        raise UserError(
            f"data.root: '{root}' lacks {', '.join(f'{m}[.gz]' for m in missing)} of the {name} files "
            f"({expected_files()}){hint(name)}"
        )
    out = {}
    for key, path in found.items():
        reader = read_image_file if key.endswith("_x") else read_label_file
        try:
            t = _read(path, reader)
        except (AssertionError, RuntimeError, ValueError, OSError, EOFError) as exc:
            raise UserError(f"data.root: '{path}' is not a readable IDX file ({type(exc).__name__}: {exc})") from None
        out[key] = t.unsqueeze(1) if key.endswith("_x") else t.long()
    for split in ("train", "test"):
        if len(out[f"{split}_x"]) != len(out[f"{split}_y"]):
            raise UserError(f"data.root: {name} {split} images and labels differ in number under '{root}'")
    return out
