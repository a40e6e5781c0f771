"""The tools that take a model (predict, export, export_serving) choose it by one helper
(`smlp_jax.tools.model_choice`): the same bad choice is the same one line from each, before
any model is built, and nothing is written."""

import numpy as np
import pytest
from PIL import Image

from smlp_jax.tools import export, export_serving, model_choice, predict

# (options, the line every tool prints); "{tmp}" is the test's folder.
BAD_CHOICES = [
    (
        [],
        "error: give --checkpoint WORKDIR (a run trained here) or --model NAME (a registered "
        "model, with --pretrained FILE for its official weights).",
    ),
    (
        ["--pretrained", "{tmp}/w.npz"],  # weights, but no model
        "error: give --checkpoint WORKDIR (a run trained here) or --model NAME (a registered "
        "model, with --pretrained FILE for its official weights).",
    ),
    (
        ["--checkpoint", "{tmp}", "--model", "smlpnet_t"],
        "error: --checkpoint and --model: give one of them (a run trained here, or a "
        "registered model).",
    ),
    (
        ["--checkpoint", "{tmp}/nowhere"],
        "error: --checkpoint {tmp}/nowhere: no such workdir or step.",
    ),
    (
        ["--checkpoint", "{tmp}", "--pretrained", "{tmp}/w.npz"],
        "error: --pretrained goes with --model, not --checkpoint.",
    ),
    (
        ["--checkpoint", "{tmp}", "--image-size", "64"],
        "error: --image-size goes with --model, not --checkpoint.",
    ),
    (
        ["--model", "smlpnet_t", "--config", "configs/smlpnet.py:demo"],
        "error: --config goes with --checkpoint, not --model.",
    ),
    (
        ["--model", "smlpnet_t", "--config.batch_size=2"],
        "error: --config.batch_size=2 goes with --checkpoint, not --model.",
    ),
    (
        ["--model", "smlpnet_t", "--pretrained", "{tmp}/absent.pth"],
        "error: --pretrained {tmp}/absent.pth: no such file.",
    ),
    (["--model", "smlpnet_t", "--model-arg", "depths"], "error: --model-arg 'depths': write"),
    (["--model", "smlpnet_tt"], "error: unknown model 'smlpnet_tt'. Did you mean smlpnet_t"),
]


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """{tool: run it with these model options}, each with its other arguments valid."""
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    out = tmp_path / "out"

    def never(*args, **kwargs):
        raise AssertionError("a model was built for a bad choice")

    monkeypatch.setattr(model_choice, "trained_model", never)
    monkeypatch.setattr(model_choice, "create_model", never)
    return {
        "predict": lambda argv: predict.main([str(image), *argv]),
        "export": lambda argv: export.main([*argv, "--out", str(out)]),
        "export_serving": lambda argv: export_serving.main([*argv, "--out", str(out)]),
    }


@pytest.mark.parametrize(("options", "line"), BAD_CHOICES)
def test_every_tool_refuses_a_bad_choice_in_the_same_line(options, line, tools, tmp_path, capsys):
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    errors = {}
    for tool, run in tools.items():
        assert run(options) == 1, tool
        captured = capsys.readouterr()
        assert captured.out == "", tool
        errors[tool] = captured.err
    assert len(set(errors.values())) == 1, errors
    err = errors["predict"]
    assert err.count("\n") == 1 and err.startswith(line.replace("{tmp}", str(tmp_path))), err
    assert not (tmp_path / "out").exists()
