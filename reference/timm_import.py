"""Importing timm beside torch 2.13 without torchvision (reference side only).

timm imports torchvision at module level (transforms, datasets, FrozenBatchNorm2d) but
its model definitions need none of it. A meta-path finder answers every `torchvision.*`
import with a stand-in module whose attributes are placeholder classes that refuse to be
built, so `import timm` works and timm's own model code runs unchanged.

timm 0.3.x (the version SPACH pins) also imports `torch._six`, removed in torch 2.0: a
stand-in with the four names it used is installed when torch lacks it.

Set up: .venv-ref/bin/pip install --no-deps timm pyyaml huggingface_hub safetensors pillow
Use:    from timm_import import timm   (the fixture scripts add reference/ to sys.path)
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} comes from the torchvision stand-in")


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":  # used as an enum at import time
            return enum.Enum(name, "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS")
        return type(name, (_Placeholder,), {})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _install_torch_six() -> None:
    """timm 0.3.x imports `torch._six` (removed in torch 2.0): the names it used."""
    import collections.abc
    import math

    import torch

    try:
        import torch._six  # noqa: F401
    except ImportError:
        six = types.ModuleType("torch._six")
        six.container_abcs = collections.abc
        six.string_classes = (str, bytes)
        six.int_classes = int
        six.inf = math.inf
        sys.modules["torch._six"] = six
        torch._six = six


_install_torch_six()

try:
    import torchvision  # noqa: F401  (a real one wins)
except ImportError:
    sys.meta_path.insert(0, _StandInFinder())

import timm  # noqa: E402

__all__ = ["timm"]
