"""Intake: from the files test equipment writes to reports durable in the spool.

:class:`Intake` (intake.py) coordinates the steps, each in its own module: ``detect`` (notice and
settle; woken by ``inotify``/``notify``), ``copying`` (copy into the data dir first), conversion in worker processes, acceptance
into the spool, ``post_actions`` (archive, move, delete, keep), ``rejects`` (the error folder),
``recovery`` (start-up), ``submit`` (files a person names) and ``reprocess`` (archived or
rejected files again).
"""

from .intake import Intake
from .model import BATCH_FILES, ERROR_SUFFIX, FileOutcome, IntakeOptions
from .post_actions import archived_name, prune_archive
from .submit import Submitted, submit_files

__all__ = ["BATCH_FILES", "ERROR_SUFFIX", "FileOutcome", "Intake", "IntakeOptions", "Submitted", "archived_name",
           "prune_archive", "submit_files"]
