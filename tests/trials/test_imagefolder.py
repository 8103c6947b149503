"""ImageFolder data (trials.imagefolder): val carved from train."""

from __future__ import annotations

import numpy as np

from trials.data import DataConfig, load_test, load_train_val


def test_imagefolder_carves_validation_from_train(tmp_path):
    from PIL import Image

    for part in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / part / c).mkdir(parents=True)
            for i in range(10):
                Image.fromarray(np.full((40, 40, 3), i * 20, np.uint8)).save(tmp_path / part / c / f"{i}.png")
    cfg = DataConfig(
        name="imagefolder", root=str(tmp_path), image_size=32, batch_size=4, num_workers=0, val_fraction=0.2
    )
    splits = load_train_val(cfg)
    assert len(splits.val.dataset) == 4 and splits.num_classes == 2
    x, _ = next(iter(splits.train))
    assert x.shape == (4, 3, 32, 32)
    assert len(load_test(cfg).dataset) == 20
