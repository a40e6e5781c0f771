"""The Hugging Face Hub layout, offline: `save_pretrained` -> `create_model("hf-hub:...")`
through a hub cache built on disk (ours and timm's layouts), `pretrained=True`, timm's
`list_models` patterns, `push_to_hub`'s hand-off to `huggingface_hub`. No test reaches the
network: sockets are refused, so an attempt fails at once."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import jax
import numpy as np
import pytest
from flax import nnx
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.numpy import save_file

import smlp_jax
from benchmarks.throughput import TINY
from smlp_jax.convert.converters import CONVERTERS
from smlp_jax.convert.export import save_weights, state_arrays
from smlp_jax.convert.hub import HubError
from smlp_jax.models.size import ModelTooLargeError
from tests.train.tiny import REPO, subprocess_env

FIXTURES = REPO / "tests" / "fixtures"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("the tests never use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a test that needed the network would hit


def put_in_cache(tmp_path, repo_id: str, folder) -> None:
    """`folder`'s files as the cached `main` revision of `repo_id` (the hub cache layout)."""
    repo = tmp_path / "hub_cache" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)


def tiny(name="smlpnet_t", **kw):
    return smlp_jax.create_model(
        name, **({"num_classes": 3, "image_size": 32, "dim": 8, "depths": (1, 1)} | kw)
    )


def logits(model, x):
    model.eval()
    return np.asarray(nnx.jit(lambda m, x: m(x))(model, x))


def test_save_pretrained_then_create_from_the_hub_cache(tmp_path):
    model = tiny()
    folder = smlp_jax.save_pretrained(
        model, tmp_path / "out", training={"recipe": "configs/smlpnet.py:demo"}
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "smlpnet_t" and config["num_classes"] == 3
    assert config["model_args"]["dim"] == 8 and config["model_args"]["image_size"] == 32
    assert config["smlp_jax"]["weights_layout"] == "official"
    card = (folder / "README.md").read_text()
    params = sum(np.size(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert f"- Parameters: {params:,}\n" in card
    assert "reference/make_smlpnet_fixture.py" in card and "recipe: configs/smlpnet.py:demo" in card

    put_in_cache(tmp_path, "someone/smlpnet-tiny", folder)
    loaded = smlp_jax.create_model("hf-hub:someone/smlpnet-tiny")
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(logits(loaded, x), logits(model, x))
    # Another class count: the body is the hub model's, the head starts fresh.
    five = smlp_jax.create_model("hf-hub:someone/smlpnet-tiny", num_classes=5)
    assert logits(five, x).shape == (2, 5)


def test_each_converter_says_how_its_layout_is_checked():
    """The card's "proven against" line comes from the family's converter (`PARITY`), not
    from a table of test files in library code; the fixture script it names exists."""
    for family, module in CONVERTERS.items():
        assert isinstance(module.PARITY, str), family
        if family == "sparse_mlp":  # no official code
            assert module.PARITY == ""
            continue
        paths = re.findall(r"`(reference/[^`]+)`", module.PARITY)
        assert paths and all((REPO / p).is_file() for p in paths), (family, module.PARITY)


def test_sparse_mlp_goes_in_our_own_layout(tmp_path):
    model = smlp_jax.create_model(
        "sparse_mlp_s", num_classes=3, image_size=32, **TINY["sparse_mlp"]
    )
    folder = smlp_jax.save_pretrained(model, tmp_path / "sparse", macs=False)
    assert (
        json.loads((folder / "config.json").read_text())["smlp_jax"]["weights_layout"] == "smlp_jax"
    )
    loaded = smlp_jax.create_model(f"hf-hub:{folder}")
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(logits(loaded, x), logits(model, x))


def _timm_repo(tmp_path, name, architecture, model_args, input_size, weights_fixture):
    folder = tmp_path / name
    folder.mkdir()
    config = {
        "architecture": architecture,
        "num_classes": 10,
        "model_args": model_args,
        "pretrained_cfg": {"input_size": [3, input_size, input_size], "classifier": "head"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    with np.load(FIXTURES / weights_fixture) as f:
        save_file({k: f[k] for k in f.files}, str(folder / "model.safetensors"))
    put_in_cache(tmp_path, f"timm/{name}", folder)


def test_timm_hub_layout_convmixer_and_mixer(tmp_path):
    """timm's own hub repositories (config.json + model.safetensors in timm's state-dict
    layout, timm's argument names) give the logits timm gave on the parity fixtures."""
    with np.load(FIXTURES / "convmixer_logits.npz") as f:
        conv = {k: f[k] for k in f.files}
    args = {k: v for k, v in json.loads(str(conv["config_gelu"])).items() if k != "activation"}
    _timm_repo(
        tmp_path,
        "convmixer_768_32.tiny",
        "convmixer_768_32",
        {**args, "act_layer": "gelu"},
        32,
        "convmixer_gelu_timm.npz",
    )
    model = smlp_jax.create_model("hf-hub:timm/convmixer_768_32.tiny")
    np.testing.assert_allclose(
        logits(model, conv["images"]), conv["logits_gelu"], atol=1e-5, rtol=1e-5
    )

    with np.load(FIXTURES / "mixer_logits.npz") as f:
        mix = {k: f[k] for k in f.files}
    c = json.loads(str(mix["config"]))
    timm_args = {
        "patch_size": c["patch_size"],
        "num_blocks": c["num_blocks"],
        "embed_dim": c["hidden_dim"],
        "mlp_ratio": [
            c["tokens_mlp_dim"] / c["hidden_dim"],
            c["channels_mlp_dim"] / c["hidden_dim"],
        ],
    }
    _timm_repo(
        tmp_path,
        "mixer_b16_224.tiny",
        "mixer_b16_224",
        timm_args,
        c["image_size"],
        "mixer_timm.npz",
    )
    model = smlp_jax.create_model("hf-hub:timm/mixer_b16_224.tiny")
    np.testing.assert_allclose(
        logits(model, mix["images"]), mix["logits_exact_gelu"], atol=1e-5, rtol=1e-5
    )


def test_bad_hub_input_is_one_line(tmp_path, monkeypatch):
    folder = smlp_jax.save_pretrained(tiny(), tmp_path / "out", macs=False)
    (folder / "model.safetensors").unlink()
    with pytest.raises(HubError, match=r"has no model\.safetensors"):
        smlp_jax.create_model(f"hf-hub:{folder}")
    # Not in the cache: offline, the line says what to do.
    with pytest.raises(HubError, match="not in the hub cache .* HF_HUB_OFFLINE is set"):
        smlp_jax.create_model("hf-hub:someone/absent")
    # The command named is the one huggingface_hub installs now (`hf`, not huggingface-cli).
    with pytest.raises(HubError, match=r"run `hf download someone/absent`"):
        smlp_jax.create_model("hf-hub:someone/absent")
    assert shutil.which("hf", path=os.path.dirname(sys.executable))
    # Online, an unreachable Hub (huggingface_hub's own error after its retries, which
    # take ~20 s against the refused sockets: raised here directly) is one line too.
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(**kwargs):
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        raise LocalEntryNotFoundError("An error happened while trying to locate the file\n...")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(
        HubError, match="could not get config.json: the Hub is not reachable"
    ) as err:
        smlp_jax.create_model("hf-hub:someone/absent")
    assert "\n" not in str(err.value)


def test_pretrained_true_and_false(tmp_path, monkeypatch):
    # False: no weights, as None; True: the official file, where timm / torch.hub keep it.
    fresh = tiny(pretrained=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SMLP_JAX_WEIGHTS", raising=False)
    with pytest.raises(
        FileNotFoundError,
        match=r"smlp_s\.pth for smlpnet_s is not in .*Download it from https://github.com/microsoft/SPACH",
    ):
        smlp_jax.create_model("smlpnet_s", pretrained=True)
    with pytest.raises(FileNotFoundError, match="smlpnet_t has no published official weights"):
        smlp_jax.create_model("smlpnet_t", pretrained=True)
    # A file under its official name in $SMLP_JAX_WEIGHTS is found (a tiny Mixer saved as
    # vit_jax's Mixer-S_16.npz, for the test) ...
    monkeypatch.setenv("SMLP_JAX_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    mixer = dict(image_size=32, num_classes=5, **TINY["mixer"])
    source = smlp_jax.create_model("mixer_s16", rngs=1, **mixer)
    save_weights(source, tmp_path / "weights" / "Mixer-S_16.npz", "vit_jax")
    loaded = smlp_jax.create_model("mixer_s16", pretrained=True, rngs=2, **mixer)
    assert_same(state_arrays(loaded), state_arrays(source))
    # ... and ConvMixer's timm copy in the hub cache.
    conv = dict(image_size=32, num_classes=5, **TINY["convmixer"])
    source = smlp_jax.create_model("convmixer_768_32", rngs=1, **conv)
    (tmp_path / "timm_repo").mkdir()
    save_weights(source, tmp_path / "timm_repo" / "model.safetensors")
    put_in_cache(tmp_path, "timm/convmixer_768_32.in1k", tmp_path / "timm_repo")
    loaded = smlp_jax.create_model("convmixer_768_32", pretrained=True, rngs=2, **conv)
    assert_same(state_arrays(loaded), state_arrays(source))
    assert_same(state_arrays(tiny(pretrained=False)), state_arrays(fresh))  # seed 0 both


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_list_models_like_timm():
    assert smlp_jax.list_models("mixer*") == [
        n for n in smlp_jax.list_models() if n.startswith("mixer")
    ]
    assert smlp_jax.list_models("smlpnet") == ["smlpnet_b", "smlpnet_s", "smlpnet_t"]
    assert smlp_jax.list_models(family="smlpnet") == smlp_jax.list_models("smlpnet")
    assert smlp_jax.list_models(["*_t", "*_s"], exclude_filters="asmlp*") == [
        "dynamixer_s",
        "hiremlp_s",
        "hiremlp_t",
        "raftmlp_s",
        "smlpnet_s",
        "smlpnet_t",
        "sparse_mlp_s",
    ]
    assert smlp_jax.list_models(module="convmixer", pretrained=True) == [
        "convmixer_1024_20",
        "convmixer_1536_20",
        "convmixer_768_32",
    ]
    with_weights = smlp_jax.list_models(pretrained=True)
    assert "smlpnet_s" in with_weights and "smlpnet_t" not in with_weights
    assert smlp_jax.list_models("nothing*") == []


def test_image_size_none_is_the_official_one():
    model = nnx.eval_shape(lambda: smlp_jax.create_model("convmixer_256_8", image_size=None))
    assert model.model_spec.image_size == 32  # CIFAR-10's, its pretrained configuration
    with pytest.raises(ValueError, match="image_size='224': give a positive int"):
        smlp_jax.create_model("smlpnet_t", image_size="224")


def test_push_to_hub_hands_the_folder_to_huggingface_hub(tmp_path):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, *, repo_id, folder_path, commit_message):
            calls.append(
                ("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir()))
            )
            return f"https://huggingface.co/{repo_id}/commit/1"

    url = smlp_jax.push_to_hub(tiny(), "someone/tiny", api=FakeApi())
    assert url == "https://huggingface.co/someone/tiny/commit/1"
    assert calls == [
        ("create_repo", "someone/tiny", {"private": False, "exist_ok": True}),
        ("upload_folder", "someone/tiny", ["README.md", "config.json", "model.safetensors"]),
    ]


def test_num_classes_zero_gives_pooled_features():
    """timm's habit: `num_classes=0` is a model without classifier, returning `(B, C)`."""
    model = tiny(num_classes=0)
    model.eval()
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 16)  # 2 stages of dim 8


def test_num_classes_zero_with_weights_drops_their_head(tmp_path):
    source = tiny(num_classes=1000)
    save_weights(source, tmp_path / "w.safetensors")
    headless = tiny(num_classes=0, pretrained=str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    source.eval(), headless.eval()
    pooled = source.forward_head(source.forward_features(x), pre_logits=True)
    np.testing.assert_array_equal(np.asarray(headless(x)), np.asarray(pooled))


# --- untrusted config.json (issue 35): one line, before anything is read or allocated ---

TINY_CONFIG = {
    "architecture": "smlpnet_t",
    "num_classes": 3,
    "model_args": {
        "alpha": 3,
        "depths": [1, 1],
        "dim": 8,
        "drop_path_rate": 0.0,
        "patch_size": 4,
        "image_size": 32,
    },
    "smlp_jax": {"weights_layout": "official"},
}


def hub_folder(tmp_path, config) -> Path:
    """A hub folder with `config` (a dict, or raw text) and a stand-in weights file."""
    folder = tmp_path / "hub_model"
    folder.mkdir(parents=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / "config.json").write_text(text)
    (folder / "model.safetensors").write_bytes(b"never read")
    return folder


def with_args(**changes):
    return {**TINY_CONFIG, "model_args": {**TINY_CONFIG["model_args"], **changes}}


@pytest.mark.parametrize(
    "config, line",
    [
        ([1, 2], "config.json: a JSON list, not an object with architecture"),
        ("{not json", "config.json: not valid JSON"),
        ({**TINY_CONFIG, "model_args": [8, 2]}, "config.json: model_args is a JSON list"),
        ({**TINY_CONFIG, "num_classes": "abc"}, "num_classes='abc' is not a class count"),
        ({**TINY_CONFIG, "num_classes": -3}, "num_classes=-3 is not a class count"),
        ({**TINY_CONFIG, "architecture": 7}, "architecture=7 is not a model name"),
        ({**TINY_CONFIG, "smlp_jax": "x"}, "config.json: smlp_jax is a JSON str"),
        (
            with_args(depths=[1000000, 1]),
            "config.json: smlpnet_t: depths=[1000000, 1] is not accepted; depths takes one "
            "int from 1 to 256 per stage",
        ),
        (
            with_args(dim=10**9),
            "config.json: smlpnet_t: dim=1000000000 is not accepted; dim takes an int from "
            "1 to 65536.",
        ),
        (with_args(depths=[1, -1]), "depths=[1, -1] is not accepted"),
        (with_args(colour="red"), "config.json: smlpnet_t: unknown hyperparameter(s) colour"),
    ],
)
def test_an_untrusted_config_is_one_line_before_anything_is_read_or_built(
    config, line, tmp_path, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("reached after a bad config.json")

    monkeypatch.setattr(smlp_jax.factory, "make_model", never)
    monkeypatch.setattr("smlp_jax.convert.hub.read_weights", never)
    folder = hub_folder(tmp_path, config)
    with pytest.raises(HubError) as err:
        smlp_jax.create_model(f"hf-hub:{folder}")
    assert line in str(err.value) and str(err.value).startswith(str(folder))
    assert "\n" not in str(err.value)


def test_a_config_describing_a_huge_model_is_measured_and_refused(tmp_path, monkeypatch):
    """In range, but 190 billion parameters: measured abstractly and refused in one line
    that says how big; SMLP_JAX_MAX_MODEL_GB moves the limit."""
    monkeypatch.setattr(smlp_jax.factory, "make_model", None)  # never reached
    folder = hub_folder(tmp_path, with_args(dim=60000))
    start = time.perf_counter()
    with pytest.raises(ModelTooLargeError) as err:
        smlp_jax.create_model(f"hf-hub:{folder}")
    assert time.perf_counter() - start < 10
    assert str(err.value) == (
        f"{folder}: smlpnet_t with these hyperparameters would have 190,806,900,187 "
        "parameters (763.2 GB), above the limit of 8 GB; set SMLP_JAX_MAX_MODEL_GB "
        "(gigabytes) higher to build it anyway."
    )
    # The limit is the override's: the tiny model (18 kB of parameters, a largest
    # activation of 12 kB) above 10 kB.
    monkeypatch.setenv("SMLP_JAX_MAX_MODEL_GB", "0.00001")
    with pytest.raises(ModelTooLargeError, match=r"4,499 parameters .* limit of 1e-05 GB"):
        smlp_jax.create_model(f"hf-hub:{hub_folder(tmp_path / 'small', TINY_CONFIG)}")


def test_the_export_tool_refuses_a_huge_config_in_seconds_and_small_memory(tmp_path):
    """Through the CLI, in a fresh process: rc 1, the one line, and the child's peak RSS
    (its own interpreter's high-water mark, VmHWM, written at exit: wait4's ru_maxrss would
    also count the pytest parent, whose memory a vfork-ed child holds until its exec) far
    below the 763 GB the config describes."""
    folder = hub_folder(tmp_path, with_args(dim=60000))
    env = {**subprocess_env(), "HF_HUB_OFFLINE": "1"}
    status_file = tmp_path / "status"
    tool = ["smlp_jax.tools.export", "--model", f"hf-hub:{folder}"]
    tool += ["--out", str(tmp_path / "out.safetensors")]
    launcher = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: open({str(status_file)!r}, 'w').write("
        "open('/proc/self/status').read()))\n"
        f"sys.argv = {tool!r}\n"
        "runpy.run_module(sys.argv[0], run_name='__main__')\n"
    )
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", launcher], env=env, cwd=REPO, capture_output=True, text=True
    )
    err = child.stderr
    assert child.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith(f"error: {folder}: smlpnet_t with"), err
    assert "190,806,900,187 parameters" in err
    peak_kb = int(re.search(r"VmHWM:\s+(\d+) kB", status_file.read_text()).group(1))
    assert peak_kb < 1_500_000, peak_kb  # imports and the abstract trace, nothing large
    assert time.perf_counter() - start < 90  # a loaded 2-core host: jax's import included


@pytest.mark.parametrize(
    "name, line",
    [
        ("./does_not_exist", "hf-hub:./does_not_exist: no such folder"),
        ("../../etc_not_here", "hf-hub:../../etc_not_here: no such folder"),
        ("/no/such/folder", "hf-hub:/no/such/folder: no such folder"),
        ("a/b/c", "hf-hub:a/b/c: not a valid Hub name (ORG/NAME"),
        ("someone/bad..name", "not a valid Hub name"),
        ("someone/" + "x" * 120, "not a valid Hub name"),
    ],
)
def test_a_missing_folder_or_invalid_hub_name_is_our_one_line(name, line, monkeypatch):
    def never(**kwargs):
        raise AssertionError("huggingface_hub reached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    with pytest.raises(HubError) as err:
        smlp_jax.create_model(f"hf-hub:{name}")
    assert str(err.value).startswith(f"hf-hub:{name}: ") and line in str(err.value)
    assert "\n" not in str(err.value)


def test_an_existing_folder_named_by_a_relative_path_is_read(tmp_path, monkeypatch):
    """`hf-hub:../../x`, when it is a folder, is that folder (our words if it is not a
    hub model)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    with pytest.raises(HubError, match=r"^\.\./\.\./etc has no config\.json"):
        smlp_jax.create_model("hf-hub:../../etc")
