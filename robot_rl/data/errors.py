"""The one error type of the log store: a file does not match the robot-rl log format."""

from __future__ import annotations

from pathlib import Path

from robot_rl.schema import SchemaError


class LogFormatError(SchemaError):
    """A run folder, manifest, chunk, journal or imported file violates the log format.

    A ``ValueError`` (through :class:`~robot_rl.schema.SchemaError`) carrying ``path`` (the file at
    fault), ``field``, ``expected`` and ``got``, plus ``episode_id`` and ``step`` where known. The
    message reads ``<path>: episode <id>, field 'obs', step 3: expected finite values, got nan``.
    """

    def __init__(
        self,
        path: Path | str,
        field: str,
        expected: str,
        got: str,
        *,
        episode_id: str | None = None,
        step: int | None = None,
        detail: str = "",
    ) -> None:
        self.path = Path(path)
        super().__init__(field, expected, got, episode_id=episode_id, step=step, detail=detail)

    def _message(self) -> str:
        return f"{self.path}: {super()._message()}"

    @classmethod
    def from_schema_error(
        cls, path: Path | str, err: SchemaError, episode_id: str | None = None
    ) -> LogFormatError:
        """Attach the file ``path`` (and an episode id, if the schema error lacks one) to ``err``."""
        return cls(
            path,
            err.field,
            err.expected,
            err.got,
            episode_id=err.episode_id if err.episode_id is not None else episode_id,
            step=err.step,
            detail=err.detail,
        )


class RunLockedError(RuntimeError):
    """Another live process holds the run's writer lock (one writer per run)."""
