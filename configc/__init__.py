from executor import __version__  # one version for the distribution (executor/__init__.py)

__all__ = ["__version__"]
