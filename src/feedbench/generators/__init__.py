"""The implementations under test: one module per family, plus the registry.

Importing this package does not import Keras or TensorFlow; building does.
"""

from feedbench.generators.registry import BUILTINS, Implementation, build, get, registry
from feedbench.generators.spec import FAMILIES, Built, Spec

__all__ = ["BUILTINS", "FAMILIES", "Built", "Implementation", "Spec", "build", "get", "registry"]
