"""Joint transforms: sizes, padding, determinism, and image/mask alignment."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from lseg.data import fewshot_transform, train_transform, val_transform
from lseg.data import transforms as T
from lseg.data.transforms import PadToMinSize, RandomLongSideResize

# Distinct, non-black colours per class: padded image pixels (0) can then only come from padding.
PALETTE = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=torch.uint8)


def _blocky_pair(h: int = 30, w: int = 44, block: int = 6):
    """A mask of constant blocks and an image painted from it (colour = PALETTE[class])."""
    grid = torch.randint(0, 4, (h // block + 1, w // block + 1), generator=torch.Generator().manual_seed(0))
    mask = grid.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    image = PALETTE[mask].permute(2, 0, 1).contiguous()
    return image, mask.long()


def _agreement(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of labelled pixels whose colour is nearest the palette colour of their mask class.

    Bilinear resampling blends colours across block edges while the mask stays nearest-sampled, so a
    pixel also counts as aligned if its colour class appears in the mask within one pixel.
    """
    dist = (image.permute(1, 2, 0)[..., None, :].float() - PALETTE.float()).abs().sum(-1)  # (H, W, 4)
    colour_cls = dist.argmin(-1)
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1, 1, 1), value=-1)
    neigh = torch.nn.functional.unfold(padded, 3).view(9, *mask.shape)  # 3x3 neighbourhood classes
    ok = (neigh == colour_cls[None]).any(0)
    labelled = mask != 255
    return float(ok[labelled].float().mean())


def test_train_transform_size_types_and_alignment():
    image, mask = _blocky_pair()
    t = train_transform(base_size=40, crop_size=32)
    torch.manual_seed(0)
    for _ in range(20):
        img, msk = t(image, mask)
        assert img.shape == (3, 32, 32) and msk.shape == (32, 32)
        assert img.dtype == torch.uint8 and msk.dtype == torch.int64
        assert type(img) is torch.Tensor and type(msk) is torch.Tensor  # tv_tensor wrappers removed
        assert set(msk.unique().tolist()) <= {0, 1, 2, 3, 255}  # nearest: no invented classes
        # Bilinear blends colours only along block edges; a misaligned mask would fail most pixels.
        assert _agreement(img, msk) > 0.97


def test_agreement_detects_misalignment():
    image, mask = _blocky_pair()
    assert _agreement(image, mask) == 1.0
    assert _agreement(image, mask.roll(3, dims=-1)) < 0.8
    assert _agreement(image, mask.flip(-1)) < 0.8


def test_train_transform_pads_mask_with_ignore():
    image, mask = _blocky_pair(h=24, w=40)
    # long side fixed to 20 -> image 12 x 20, padded to 32 x 32 before the crop
    t = train_transform(base_size=40, crop_size=32, scale_range=(0.5, 0.5), hflip_p=0.0)
    img, msk = t(image, mask)
    padded = msk == 255
    assert int(padded.sum()) == 32 * 32 - 12 * 20
    assert torch.equal(padded, img.sum(0) == 0)  # image padded with 0 exactly where the mask is ignore
    assert torch.equal(padded[:12, :20], torch.zeros(12, 20, dtype=torch.bool))  # pad at bottom/right only
    t = train_transform(base_size=40, crop_size=32, scale_range=(0.5, 0.5), hflip_p=0.0, ignore_index=65535)
    assert int((t(image, mask)[1] == 65535).sum()) == 32 * 32 - 12 * 20


def test_train_transform_deterministic_under_manual_seed():
    image, mask = _blocky_pair()
    t = train_transform(base_size=40, crop_size=16)
    torch.manual_seed(123)
    first = [t(image, mask) for _ in range(5)]
    torch.manual_seed(123)
    second = [t(image, mask) for _ in range(5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert not all(torch.equal(first[0][1], f[1]) for f in first[1:])  # but it is random


def test_horizontal_flip_moves_image_and_mask_together():
    image, mask = _blocky_pair(h=32, w=32)
    t = train_transform(base_size=32, crop_size=32, scale_range=(1.0, 1.0), hflip_p=1.0)
    img, msk = t(image, mask)
    assert torch.equal(msk, mask.flip(-1)) and torch.equal(img, image.flip(-1))


def test_random_long_side_resize_rounding_and_range():
    img = tv_tensors.Image(torch.zeros(3, 30, 40, dtype=torch.uint8))
    assert RandomLongSideResize(50, 50).make_params([img])["size"] == [38, 50]  # int(30*50/40 + 0.5)
    tall = tv_tensors.Image(torch.zeros(3, 40, 30, dtype=torch.uint8))
    assert RandomLongSideResize(50, 50).make_params([tall])["size"] == [50, 38]
    t = RandomLongSideResize(20, 80)
    torch.manual_seed(0)
    longs = {max(t.make_params([img])["size"]) for _ in range(400)}
    assert min(longs) == 20 and max(longs) == 80  # inclusive bounds, like random.randint
    with pytest.raises(ValueError):
        RandomLongSideResize(10, 5)


def test_pad_to_min_size_noop_when_large_enough():
    img = tv_tensors.Image(torch.ones(3, 40, 50, dtype=torch.uint8))
    assert PadToMinSize(32)(img).shape == (3, 40, 50)


def test_val_transform_short_side_then_center_crop():
    image, mask = _blocky_pair(h=30, w=60)
    img, msk = val_transform(crop_size=15)(image, mask)
    assert img.shape == (3, 15, 15) and msk.shape == (15, 15)
    # resized to 15 x 30 (nearest at pixel centres, as PIL: source row/col 2i + 1), centre crop starts
    # at column round((30 - 15) / 2) = 8
    expected = mask[1::2, 1::2][:, 8:23]
    assert torch.equal(msk, expected)
    assert _agreement(img, msk) > 0.9


def test_empty_compose_identity_and_fewshot_resize():
    image, mask = _blocky_pair(h=20, w=30)
    img, msk = T.JointCompose([])(image, mask)
    assert torch.equal(img, image) and torch.equal(msk, mask)
    mask[0, 0] = 255
    img, msk = fewshot_transform(12)(image, mask)
    assert img.shape == (3, 12, 12) and msk.shape == (12, 12)
    assert set(msk.unique().tolist()) <= {0, 1, 2, 3, 255}
    with pytest.raises(ValueError, match="same size"):
        T.JointCompose([])(image, mask[:5])


def _pil_train_pipeline(image, mask, size_hw, flip, crop_size, ignore_index=255):
    """The reference's PIL steps (PyTorch-Encoding ``_sync_transform``) for given random draws:
    flip, resize (image BILINEAR, mask NEAREST), pad bottom/right (0 / ignore). Returns the padded
    arrays; the random crop is searched for by the caller."""
    import numpy as np
    from PIL import Image

    img = Image.fromarray(image.permute(1, 2, 0).numpy())
    msk = Image.fromarray(mask.numpy().astype(np.uint8))
    if flip:
        img, msk = img.transpose(Image.FLIP_LEFT_RIGHT), msk.transpose(Image.FLIP_LEFT_RIGHT)
    oh, ow = size_hw
    img = np.asarray(img.resize((ow, oh), Image.BILINEAR)).astype(np.int64)
    msk = np.asarray(msk.resize((ow, oh), Image.NEAREST)).astype(np.int64)
    ph, pw = max(crop_size - oh, 0), max(crop_size - ow, 0)
    img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=0)
    msk = np.pad(msk, ((0, ph), (0, pw)), constant_values=ignore_index)
    return img, msk


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_train_transform_matches_pil_nearest_and_bilinear(flip):
    """Issue 15 item 1: the training transform against the reference's PIL resampling, pixel for pixel.

    A 525 x 700 image (ADE-like 3:4) of 7-pixel label blocks, long side drawn as 600 (-> 450 x 600),
    padded to 480 rows, then a random 480 crop: the mask equals PIL's NEAREST exactly, the image PIL's
    BILINEAR within 1 grey level, at the crop offset the transform drew.
    """
    import numpy as np

    g = torch.Generator().manual_seed(15)
    blocks = torch.randint(0, 150, (525 // 7 + 1, 700 // 7 + 1), generator=g)
    mask = blocks.repeat_interleave(7, 0).repeat_interleave(7, 1)[:525, :700].long()
    image = torch.randint(0, 256, (3, 525, 700), generator=g, dtype=torch.uint8)
    crop = 480
    t = train_transform(base_size=600, crop_size=crop, scale_range=(1.0, 1.0), hflip_p=flip)
    torch.manual_seed(0)
    img, msk = t(image, mask)
    ref_img, ref_msk = _pil_train_pipeline(image, mask, (450, 600), bool(flip), crop)
    assert ref_msk.shape == (480, 600)
    out_msk, out_img = msk.numpy(), img.permute(1, 2, 0).numpy().astype(np.int64)
    offsets = [x for x in range(600 - crop + 1) if np.array_equal(ref_msk[:, x : x + crop], out_msk)]
    assert len(offsets) == 1, "the mask must equal PIL's NEAREST at exactly one crop offset"
    x = offsets[0]
    diff = np.abs(ref_img[:, x : x + crop] - out_img)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # torchvision's legacy NEAREST (top-left sampling), the bug this replaces, is visibly off.
    legacy = F.resize(tv_tensors.Mask(mask.flip(-1) if flip else mask), [450, 600], interpolation=InterpolationMode.NEAREST)
    assert (legacy.numpy() != ref_msk[:450]).mean() > 0.05


def test_resize_pair_item_matches_pil_nearest_on_the_issue_case():
    """700 x 525 -> 480 x 360 (the issue's example): NEAREST_EXACT equals PIL's NEAREST."""
    import numpy as np
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 150, (700, 525), generator=g)
    ref = np.asarray(Image.fromarray(mask.numpy().astype(np.uint8)).resize((360, 480), Image.NEAREST))
    out = T.resize_pair_item(tv_tensors.Mask(mask), [480, 360])
    assert isinstance(out, tv_tensors.Mask) and np.array_equal(out.numpy(), ref)


@pytest.mark.parametrize("shape", [(700, 525), (375, 500), (333, 500), (96, 130)])
def test_fewshot_masks_are_resized_as_hsnet_does(shape):
    """HSNet (the zero-shot protocol's loaders) resizes masks with ``F.interpolate(mode="nearest")``
    (top-left sampling), not PIL's NEAREST: pixel centres moved ~0.3 % of the scored labels, and mIoU."""
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 2, (shape[0] // 7 + 1, shape[1] // 7 + 1), generator=g)
    mask = mask.repeat_interleave(7, 0).repeat_interleave(7, 1)[: shape[0], : shape[1]].clone()
    mask[mask.shape[0] // 2, :] = 255  # PASCAL boundary
    _, msk = fewshot_transform(480)(torch.zeros(3, *shape, dtype=torch.uint8), mask)
    ref = torch.nn.functional.interpolate(mask[None, None].float(), (480, 480), mode="nearest")[0, 0].long()
    assert torch.equal(msk, ref)
