"""Test-wide set-up: CPU only, parsed absl flags (grain workers need them), offline."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Never let a test reach the network through tfds.
os.environ.setdefault("TFDS_DISABLE_DOWNLOAD", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
