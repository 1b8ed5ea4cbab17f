"""Exceptions and warnings of the depth package: one base class, one subclass per mistake.

Every error is also a ``ValueError`` so callers that only know the standard library
still catch bad input; callers that care catch the precise subclass.
"""

from __future__ import annotations


class DepthError(ValueError):
    """Base class of every error raised by :mod:`splitedge.models.depth`."""


class InvalidInputError(DepthError):
    """An array or parameter has the wrong shape, dtype, range or value."""


class FocalStackError(DepthError):
    """A focal stack on disk cannot be loaded or saved."""


class FocusFileMissingError(FocalStackError):
    """The stack folder has no ``focus.json``."""


class FocusFileMalformedError(FocalStackError):
    """``focus.json`` is not valid JSON or lacks / mistypes a required field."""


class SliceCountMismatchError(FocalStackError):
    """The number of focus distances differs from the number of images."""


class UnreadableImageError(FocalStackError):
    """An image file is missing or cannot be decoded."""


class SliceSizeMismatchError(FocalStackError):
    """The slices of one stack do not all have the same height and width."""


class FocusDistanceError(FocalStackError):
    """Focus distances are non-positive, non-finite or not strictly monotonic."""


class AlignmentWarning(UserWarning):
    """Feature registration failed for a slice and a weaker fallback was used."""
