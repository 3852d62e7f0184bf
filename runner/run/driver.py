"""The host's side of the harness protocol (gilmatrix.harness.contract.Op): one driver per
interpreter, a process or a container that lives for the whole run, spoken to in JSON lines.
``HarnessDriver`` is what the run loop needs of one, so that the loop can be driven by another
(tests: a driver that answers without an interpreter). Stage: run."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gilmatrix.harness.contract import Op


class HarnessDriver(Protocol):
    """What the run loop asks of an interpreter's driver."""

    interp_id: str
    job_name: str

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one command (Op.*), return its reply; DriverDied when there is none."""
        ...

    def close(self, interrupted: bool = False) -> bool:
        """Stop the driver; True when it exited by itself."""
        ...


# (interpreter id, the harness command, its log file, the job file's name) -> a started driver
DriverFactory = Callable[[str, list[str], Path, str], HarnessDriver]


class DriverDied(Exception):
    """The harness driver exited, or did not answer in time; the message says what it said."""


class Driver:
    """One interpreter's harness driver (``python -m gilmatrix.harness serve``, in a container
    with the docker backend), spoken to in JSON lines: a command on stdin, its answer on
    stdout. Its stderr goes to ``cells/<interpreter>.harness.log``."""

    def __init__(self, interp_id: str, command: list[str], log_path: Path, job_name: str) -> None:
        self.interp_id, self.job_name, self.log_path = interp_id, job_name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.stderr = open(log_path, "a")  # noqa: SIM115 - open for the driver's whole life
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def tail(self) -> str:
        self.stderr.flush()
        lines = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return " | ".join(lines)[-500:]

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise DriverDied(f"the harness exited ({self.proc.poll()}): {self.tail()}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                self.proc.kill()
                raise DriverDied(f"no answer within {timeout:.0f} s; the harness was killed") from None
            if line is None:
                code = self.proc.wait()
                raise DriverDied(f"the harness exited with {code}: {self.tail()}")
            try:
                reply = json.loads(line)
            except ValueError:
                self.stderr.write(line)  # stray output: kept in the log, not an answer
                continue
            if isinstance(reply, dict):
                return reply

    def close(self, interrupted: bool = False) -> bool:
        """Stop the driver; True when it exited by itself."""
        clean = True
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                if interrupted:
                    self.proc.send_signal(signal.SIGTERM)
                else:
                    self.proc.stdin.write(json.dumps(Op.quit()) + "\n")
                    self.proc.stdin.flush()
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
            clean = False
        self.stderr.close()
        return clean
