"""Errors a user can act on. The CLI prints them without a traceback and exits with ``exit_code``."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (matrix file, CLI argument, results folder): exit code 2, nothing has run."""

    exit_code = 2


class EnvironmentUnavailable(Exception):
    """An interpreter (or image) cannot be provided; the run records it as skipped and goes on."""
