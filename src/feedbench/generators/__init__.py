"""The implementations under test: one module per family, plus the registry.

Importing this package does not import Keras or TensorFlow; building does.
"""

from feedbench.core.spec import FAMILIES, Built, Spec
from feedbench.generators.registry import BUILTINS, Implementation, build, get, registry

__all__ = ["BUILTINS", "FAMILIES", "Built", "Implementation", "Spec", "build", "get", "registry"]
