"""Worlds are dataclasses rebuilt from their generating parameters (world.json)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

W = TypeVar("W", bound="SavedParams")


class SavedParams:
    """Mixin for a dataclass world: `params()`, `save(path)` and `load(path)` through its init fields."""

    def params(self) -> dict[str, Any]:
        """The generating parameters; `type(self)(**params)` rebuilds the same world."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}  # pyright: ignore[reportArgumentType]  (subclasses are dataclasses)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.params(), indent=1))

    @classmethod
    def load(cls: type[W], path: str | Path) -> W:
        return cls(**json.loads(Path(path).read_text()))
