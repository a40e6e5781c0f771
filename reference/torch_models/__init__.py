"""Independent PyTorch implementations used only to make parity fixtures (never by tests).

One module per family, written for this repo with the official state-dict key names and
layout, so their `state_dict()` is what the official checkpoints hold. Run them with the
reference venv (`.venv-ref`, see the Makefile's `fixtures` target).
"""
