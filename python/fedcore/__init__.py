"""fedcore: federated learning that sends a hundredth of the bytes."""

from fedcore.layout import ParamLayout

__all__ = ["ParamLayout"]
__version__ = "0.1.0"
