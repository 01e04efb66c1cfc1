"""audiokit: speech recognition, neural codecs and audio generation in PyTorch."""

__version__ = "0.1.0"
