"""traice: find and segment every microglial cell in whole-brain 3D fluorescence volumes."""

__version__ = "0.1.0"
