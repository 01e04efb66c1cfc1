"""User-facing errors.

Every error a user can cause (bad audio, a malformed data dir, a missing model file, a bad
option) is an :class:`AudiokitError` whose message says, in one line, what is wrong with which
item and how to fix it. The CLI prints it without a traceback and exits with status 2.
"""


class AudiokitError(Exception):
    """Base class: the message is one line naming the item, the cause and the fix."""


class AudioError(AudiokitError):
    """Audio that cannot be read: missing, empty, truncated, corrupt or unsupported."""


class DataDirError(AudiokitError):
    """A Kaldi-style data directory that is missing files or has inconsistent entries."""


class FeatureError(AudiokitError):
    """Feature extraction that cannot proceed (e.g. audio shorter than one frame)."""


class TokenizerError(AudiokitError):
    """A tokenizer that cannot be trained or loaded."""


class ScoringError(AudiokitError):
    """Reference/hypothesis files that cannot be scored together."""


class ConfigError(AudiokitError):
    """An invalid option or configuration value."""


class ModelError(AudiokitError):
    """A model directory or checkpoint that is missing files or does not fit its config."""


class NotBuiltError(AudiokitError):
    """A part of audiokit that is planned but not built yet."""
