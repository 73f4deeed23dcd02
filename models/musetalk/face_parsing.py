"""BiSeNet face parsing (CelebAMask-HQ, 19 classes) for MuseTalk's blending mask.

The architecture and module names follow the face-parsing.PyTorch checkpoint
`79999_iter.pth` that MuseTalk uses, so the official file loads unchanged; its ResNet-18
backbone is first initialised from torchvision's `resnet18-5c106cde.pth`, as officially.
"jaw" mode (MuseTalk 1.5) keeps the face skin dilated with a cone-shaped kernel and eroded
sideways on the cheeks (so the blend stays off the cheek edges), plus lips and mouth,
without the nose; the caller keeps only the lower half of the paste box.
`jaw_masks` works on host arrays with OpenCV morphology; `jaw_masks_tensor` does the same
morphology with convolutions on the device, for frames resident there.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import load_strict, read_state_dict
from models.musetalk.crop_device import resize_image

PARSE_SIZE = 512
NUM_CLASSES = 19
SKIN, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = 1, 10, 11, 12, 13
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHEEK_WIDTH = 90  # pixels at 512 px either side of the centre kept un-eroded (MuseTalk 1.5)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18Backbone(nn.Module):
    """torchvision ResNet-18 without its classifier; returns the 1/8, 1/16 and 1/32 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18Backbone()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * atten + feat


class SegmentationHead(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet as in face-parsing.PyTorch; the auxiliary heads exist for the checkpoint's keys
    but are not evaluated at inference."""

    def __init__(self, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = SegmentationHead(256, 256, classes)
        self.conv_out16 = SegmentationHead(128, 64, classes)
        self.conv_out32 = SegmentationHead(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] ImageNet-normalised RGB -> class logits [B, 19, H, W]."""
        feat8, feat16_up = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, feat16_up))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(parsing_path: str | os.PathLike, resnet_path: str | os.PathLike) -> BiSeNet:
    """Build BiSeNet, initialise its backbone from `resnet_path`, then load `parsing_path`, both strictly."""
    net = BiSeNet()
    load_strict(net.cp.resnet, read_state_dict(resnet_path), resnet_path, ignore_unexpected=("fc.",))
    load_strict(net, read_state_dict(parsing_path), parsing_path)
    return net.eval().requires_grad_(False)


def _cone_kernel(cone: int = 21, tail: int = 12) -> np.ndarray:
    """MuseTalk's 33x33 structuring element: a cone widening row by row, then a straight tail.

    Dilating with it reaches 16 px above a region and at most 6 px below it (at 512 px).
    """
    size = cone + tail
    centre = size // 2
    kernel = np.zeros((size, size), dtype=np.uint8)
    for row in range(cone // 2, cone):
        half = row - cone // 2
        kernel[row, centre - half : centre + half + 1] = 1
    base_half = int(kernel[cone - 1].sum()) // 2
    kernel[cone:, max(0, centre - base_half) : min(size, centre + base_half + 1)] = 1
    return kernel


def _cheek_sides(cheek_width: int = CHEEK_WIDTH, size: int = PARSE_SIZE) -> np.ndarray:
    """255 on the left and right cheeks (outside the central band of +-cheek_width px), else 0."""
    mask = np.zeros((size, size), dtype=np.uint8)
    centre = size // 2
    mask[:, : centre - cheek_width + 1] = 255
    mask[:, centre + cheek_width :] = 255
    return mask


class FaceParser:
    """Batched BiSeNet parsing to MuseTalk's "jaw" blending masks."""

    def __init__(self, net: BiSeNet, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.net = net.to(device=device, dtype=dtype)
        self.device = device
        self.dtype = dtype
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.kernel = _cone_kernel()
        self.cheek_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))
        self.cheeks = _cheek_sides()
        self._kernel_t = torch.from_numpy(self.kernel).float().to(device)[None, None]
        self._cheek_kernel_t = torch.from_numpy(self.cheek_kernel).float().to(device)[None, None]
        self._cheeks_t = torch.from_numpy(self.cheeks > 0).to(device)

    @torch.no_grad()
    def parse(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images (any sizes) -> class maps [B, 512, 512] uint8."""
        batch = np.stack([cv2.resize(im, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR) for im in images])
        return self._classes(torch.from_numpy(batch)).cpu().numpy()

    def _classes(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 512, 512, 3] uint8 RGB -> class maps [B, 512, 512] uint8 on the device."""
        x = batch.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        x = ((x - self.mean) / self.std).to(self.dtype)
        return self.net(x).argmax(dim=1).to(torch.uint8)

    def jaw_mask(self, parsing: np.ndarray) -> np.ndarray:
        """One 512x512 class map -> "jaw" mask (uint8 0/255): dilated skin (cheeks eroded), lips, mouth; no nose."""
        skin = np.where(parsing == SKIN, 255, 0).astype(np.uint8)
        grown = cv2.dilate(skin, self.kernel, iterations=1)
        eroded = cv2.erode(grown, self.cheek_kernel, iterations=2)
        region = cv2.bitwise_or(cv2.bitwise_and(eroded, self.cheeks), cv2.bitwise_and(grown, cv2.bitwise_not(self.cheeks)))
        keep = ((region == 255) & (parsing != NOSE)) | np.isin(parsing, (MOUTH, UPPER_LIP, LOWER_LIP))
        return np.where(keep, 255, 0).astype(np.uint8)

    def jaw_masks(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Masks for each image at its own size (uint8 0-255)."""
        out = []
        for image, parsing in zip(images, self.parse(images)):
            mask = self.jaw_mask(parsing)
            out.append(cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR))
        return out

    def jaw_mask_tensor(self, parsing: torch.Tensor) -> torch.Tensor:
        """`jaw_mask` for a batch of class maps [B, 512, 512] on the device -> uint8 0/255 masks there.

        Binary morphology as convolutions with the same structuring elements and cv2's
        borders: dilation counts any kernel hit (outside is 0), erosion needs every hit
        (outside is 1, so the frame edge never erodes).
        """
        skin = (parsing == SKIN).float()[:, None]
        grown = _dilate(skin, self._kernel_t)
        eroded = _erode(_erode(grown, self._cheek_kernel_t), self._cheek_kernel_t)
        region = torch.where(self._cheeks_t, eroded, grown)[:, 0] > 0.5
        lips = torch.isin(parsing, torch.tensor([MOUTH, UPPER_LIP, LOWER_LIP], device=parsing.device))
        keep = (region & (parsing != NOSE)) | lips
        return keep.to(torch.uint8) * 255

    @torch.no_grad()
    def jaw_masks_tensor(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """`jaw_masks` for HxWx3 uint8 tensors on the device: masks at each image's size, kept there."""
        batch = torch.stack([resize_image(im, (PARSE_SIZE, PARSE_SIZE), "bilinear") for im in images])
        masks = self.jaw_mask_tensor(self._classes(batch))
        return [resize_image(mask, (int(im.shape[0]), int(im.shape[1])), "bilinear") for im, mask in zip(images, masks)]


def _dilate(mask: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Binary dilation of [B, 1, H, W] 0/1 floats by an odd [1, 1, kh, kw] 0/1 kernel (anchor at its centre)."""
    kh, kw = kernel.shape[-2:]
    return (F.conv2d(mask, kernel, padding=(kh // 2, kw // 2)) > 0.5).float()


def _erode(mask: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Binary erosion, the border counting as set (cv2's default for erode)."""
    kh, kw = kernel.shape[-2:]
    padded = F.pad(mask, (kw // 2, kw // 2, kh // 2, kh // 2), value=1.0)
    return (F.conv2d(padded, kernel) > kernel.sum() - 0.5).float()
