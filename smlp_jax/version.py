"""The package's version (`smlp_jax.__version__`), below every layer: `hub.py` writes it
into the `config.json` of a saved model without importing the package face."""

__version__ = "0.1.0"
