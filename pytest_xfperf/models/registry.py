"""Resolve the model names of a run: builtin, registered from conftest, or a local directory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pytest_xfperf.models.builtin import BUILTIN
from pytest_xfperf.models.hf import local_dir_spec
from pytest_xfperf.models.spec import ModelSpec


def looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(".") or name.startswith("~")


class ModelRegistry:
    """Builtin factories plus user specs; specs are built only when a run asks for them."""

    def __init__(self, user_specs: Iterable[ModelSpec], rootpath: Path, seed: int) -> None:
        self._rootpath = rootpath
        self._seed = seed
        self._user: dict[str, ModelSpec] = {}
        self._resolved: dict[str, ModelSpec] = {}
        self.add_user_specs(user_specs)

    def add_user_specs(self, user_specs: Iterable[ModelSpec]) -> None:
        """Take the specs of one call of the pytest_xfperf_models hook.

        The hook is called again as deeper conftests load, so a name seen in an earlier call
        is replaced (a model already used keeps its spec); a name twice in one call is an error.
        """
        seen: set[str] = set()
        for spec in user_specs:
            if not isinstance(spec, ModelSpec):
                raise ValueError(
                    f"pytest_xfperf_models returned {spec!r}; it must return ModelSpec objects"
                )
            if spec.name in seen or spec.name in BUILTIN:
                raise ValueError(
                    f"model name {spec.name!r} is registered twice (builtin names: "
                    f"{', '.join(sorted(BUILTIN))})"
                )
            seen.add(spec.name)
            self._user[spec.name] = spec

    @property
    def known_names(self) -> list[str]:
        return sorted([*BUILTIN, *self._user])

    def case_name(self, name: str) -> str:
        """The name a model has in test ids (a directory becomes its sanitized base name)."""
        return self.get(name).name if looks_like_path(name) else name

    def check(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in BUILTIN and n not in self._user
                   and not looks_like_path(n)]
        if unknown:
            raise ValueError(
                f"unknown model {', '.join(repr(u) for u in unknown)}; valid models: "
                f"{', '.join(self.known_names)}, or a path to a local Hugging Face model "
                "directory (containing config.json)"
            )
        for name in names:
            if looks_like_path(name):
                self.get(name)  # validates the directory now, as a usage error

    def generative(self, names: Sequence[str]) -> dict[str, int]:
        """The generative models among ``names`` (by case name) and their position limits."""
        found: dict[str, int] = {}
        for name in names:
            try:
                spec = self.get(name)
            except ModuleNotFoundError:
                continue  # a builtin encoder whose package is missing: skipped at setup
            if spec.generative:
                found[spec.name] = spec.max_positions
        return found

    def get(self, name: str) -> ModelSpec:
        if name not in self._resolved:
            if name in self._user:
                spec = self._user[name]
            elif name in BUILTIN:
                spec = BUILTIN[name](self._seed)
            else:
                path = Path(name).expanduser()
                if not path.is_absolute():
                    path = self._rootpath / path
                if not path.is_dir():
                    raise ValueError(f"model directory {name!r} does not exist ({path})")
                spec = local_dir_spec(path)
            self._resolved[name] = spec
        return self._resolved[name]
