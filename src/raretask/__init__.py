"""raretask: which tasks in a data mixture does a width-N model learn, and why?"""

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import ConfigError
from .mixture import MixtureSpec

try:
    __version__ = _version("raretask")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

__all__ = ["ConfigError", "MixtureSpec", "__version__"]
