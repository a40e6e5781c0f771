"""`UserError`: the one base of every error a user can cause and fix.

Its message alone is a complete answer to the user: what was wrong and what to do. The
trainer's CLI (`smlp_jax.train.cli`) and every tool catch `UserError` and print one line,
`error: <message>`, with a non-zero exit status; any other exception is a bug and keeps its
traceback. The bottom layer of the package: every package may import it, it imports none.

Each error class also keeps the built-in base its callers catch (`ValueError`,
`RuntimeError`): `class WeightsFileError(UserError, ValueError)`.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error in the user's input (a config, an option, a file, a name); its message says
    what to change."""
