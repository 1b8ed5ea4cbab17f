"""Exceptions of the data package: one base class, one subclass per mistake.

Each error also derives from the standard exception a caller would expect
(``ValueError`` for bad values, ``FileNotFoundError`` for missing files), so code
that only knows the standard library still catches it.
"""

from __future__ import annotations


class DataError(Exception):
    """Base class of every error raised by :mod:`splitedge.models.data`."""


class DataConfigError(DataError, ValueError):
    """A generator or export setting is out of range (size, counts, fractions)."""


class AnnotationFileNotFoundError(DataError, FileNotFoundError):
    """The COCO annotation file does not exist."""


class MalformedAnnotationsError(DataError, ValueError):
    """The annotation file is not valid JSON or lacks / mistypes a COCO field."""


class ImageFilesMissingError(DataError, FileNotFoundError):
    """Images listed in the annotation file are not on disk."""


class InvalidBBoxError(DataError, ValueError):
    """An annotation's bbox is not four finite numbers with non-negative size."""


class PredictionFormatError(DataError, ValueError):
    """Predictions or masks given to an evaluation helper have the wrong shape or keys."""
