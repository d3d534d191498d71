"""Datasets and DataModules: workers ship uint8 images, the training device augments and converts to events."""

from .base import EventDataModule, I2EDataModule, ImageDataModule, ResizedDataset, TensorImageDataset
from .cifar import CIFAR10DataModule, CIFAR100DataModule
from .cifar10dvs import CIFAR10DVSDataModule
from .config import datamodule_from_config
from .eventfile import EventFileDataModule
from .fake import FakeDataModule
from .imagefolder import ImageFolderDataModule
from .mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "CIFAR10DVSDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "EventDataModule",
    "EventFileDataModule",
    "FakeDataModule",
    "FashionMNISTDataModule",
    "I2EDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "ResizedDataset",
    "TensorImageDataset",
    "datamodule_from_config",
]
