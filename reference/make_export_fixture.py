"""Loads our exported weights into the PyTorch code with `strict=True` and stores its
logits: the check that weights out are the official layout.

    .venv/bin/python reference/write_export_weights.py    # first: our side
    .venv-ref/bin/python reference/make_export_fixture.py

For each family, tests/fixtures/export/<family>.safetensors (written by
`smlp_jax.convert.export.save_weights`) goes into the PyTorch model the family's parity
fixture was made with (timm's MlpMixer and ConvMixer; the reference ports of the official
code in reference/torch_models for the others), built with that fixture's architecture;
tests/fixtures/export_logits.npz gets `<family>` = its eval-mode logits on
<family>_images.npy. tests/convert/test_export_official.py compares ours to them.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_as_mlp_fixture as as_mlp  # noqa: E402
import make_convmixer_fixture as convmixer  # noqa: E402
import make_dynamixer_fixture as dynamixer  # noqa: E402
import make_hire_mlp_fixture as hire_mlp  # noqa: E402
import make_mixer_fixture as mixer  # noqa: E402
import make_permutator_fixture as permutator  # noqa: E402
import make_raft_mlp_fixture as raft_mlp  # noqa: E402
import make_smlpnet_fixture as smlpnet  # noqa: E402

EXPORTS = os.path.join(HERE, "..", "tests", "fixtures", "export")
OUT = os.path.join(HERE, "..", "tests", "fixtures", "export_logits.npz")

MODELS = {
    "smlpnet": lambda: smlpnet.SMLPNetReference(
        image_size=smlpnet.IMAGE_SIZE, dp_rate=0.0, **smlpnet.CONFIG
    ),
    "mixer": lambda: mixer.build(torch.nn.GELU),  # timm's, exact GELU
    "convmixer": lambda: convmixer.build(convmixer.CONFIGS["gelu"]),  # timm's
    "dynamixer": lambda: dynamixer.DynaMixer(**dynamixer.CONFIG),
    "permutator": lambda: permutator.VisionPermutator(**permutator.CONFIG),
    "as_mlp": lambda: as_mlp.ASMLP(**as_mlp.CONFIG),
    "hire_mlp": lambda: hire_mlp.HireMLPNet(**hire_mlp.CONFIG),
    "raft_mlp": lambda: raft_mlp.RaftMLP(**raft_mlp.CONFIG, image_size=raft_mlp.IMAGE_SIZE),
}


def main() -> None:
    out = {}
    for family, make in MODELS.items():
        model = make()
        state = load_file(os.path.join(EXPORTS, f"{family}.safetensors"))
        model.load_state_dict(state, strict=True)  # every key, no more, same shapes
        model.eval()
        images = np.load(os.path.join(EXPORTS, f"{family}_images.npy"))
        with torch.no_grad():
            logits = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
        out[family] = logits.numpy()
        print(f"{family}: {len(state)} arrays loaded strictly, logits {tuple(logits.shape)}")
    np.savez(OUT, **out)


if __name__ == "__main__":
    main()
