"""Backends provide one interpreter environment each and the command that runs the harness in it.

Modelled on asv's environment plugins: the run loop only knows the :class:`Backend` interface;
``local`` uses interpreters found on the host, ``docker`` one image per interpreter.
"""

from __future__ import annotations

from gilmatrix.backends.base import Backend, BackendOptions, Environment

__all__ = ["BACKEND_NAMES", "Backend", "BackendOptions", "Environment", "get_backend"]

BACKEND_NAMES = ("auto", "local", "docker")


def get_backend(name: str, options: BackendOptions) -> Backend:
    """Return the backend called ``name``; ``auto`` picks docker when an engine answers."""
    if name == "auto":
        from gilmatrix.backends import docker

        name = "docker" if docker.engine_answers() else "local"
    if name == "local":
        from gilmatrix.backends.local import LocalBackend

        return LocalBackend(options)
    if name == "docker":
        from gilmatrix.backends.docker import DockerBackend

        return DockerBackend(options)
    from gilmatrix.errors import UserError

    raise UserError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")
