"""Components and their registries: one registry per kind, the one list of valid names.

A *component* is a class that does one job of a run: a decoder, an encoder, a negative
sampler, a loss, a regulariser, an embedding mutation, an optimizer. It lives in a file of
its own, is registered under a name in the registry of its kind, and says two things about
itself:

* ``options``: its settings, ``{"p_norm": Option(1, "norm of h + r - t", choices=(1, 2))}``,
  merged along the class hierarchy (a subclass adds to or overrides its base's). The config
  checks every option (type, range) from this declaration alone, under the section of the
  component's kind: ``model.p_norm`` is a valid key because TransE declares ``p_norm``, and
  :mod:`emu_dgl.config` names no component;
* how it is built: its classmethod ``from_options`` when it has one, else the class itself,
  called with its options and with the parts of the run it asks for by parameter name
  (``num_entities``, ``train``, ``device``, ... see :meth:`Registry.build`).

The registries are defined here, below everything else, so that the config (which may not
import the components) can ask them for options. Each knows the package that holds its
built-in components and imports every module of it on first use (a new component is one
new file: nothing else names it); third-party packages add components
through Python entry points (group ``emu_dgl.decoders``, ``emu_dgl.samplers``, ...: the name
of the entry point is the component's name), loaded only when that name is used. A
registry says where each component came from (:meth:`Registry.origin`), which a run
records so that a later process can name the plugin it needs.

The design follows PyKEEN's class resolver (a name or an instance, entry points for
plugins) and LibKGE's per-component option declarations (each component documents and
types its own settings; the config knows none of them).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from emu_dgl.errors import ConfigError, shown

T = TypeVar("T")

__all__ = [
    "DECODERS",
    "KINDS",
    "LOSSES",
    "MUTATIONS",
    "OPTIMIZERS",
    "REGULARIZERS",
    "SAMPLERS",
    "Option",
    "Registry",
    "declared_options",
    "registry_key",
]


def registry_key(name: str) -> str:
    """The canonical spelling of a component name: case-insensitive, ``-`` read as ``_``
    (``Self-Adversarial`` is ``self_adversarial``)."""
    return name.strip().lower().replace("-", "_")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One setting a component declares: its default, meaning, type and valid range.

    ``type`` defaults to the type of ``default`` (``bool``, ``int``, ``float``, ``str``); a
    ``Literal["a", "b"]`` gives a fixed set of words (accepted in any case, ``-`` or ``_``).
    ``low``/``high`` bound numbers (``low_open``/``high_open``: the bound itself is
    invalid), ``choices`` lists the only valid numbers, and ``note`` says the valid values
    in words where the bounds alone do not (it replaces the generic message).
    """

    default: Any
    help: str = ""
    type: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    note: str = ""

    @property
    def kind(self) -> Any:
        """The annotation values are checked against (see :func:`emu_dgl.config` coercion)."""
        return self.type if self.type is not None else type(self.default)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (already of the right type) is out of range, or ``None``."""
        if self.choices:
            ok = value in self.choices
        elif isinstance(value, int | float) and not isinstance(value, bool):
            ok = not (isinstance(value, float) and math.isnan(value))
            if self.low is not None:
                ok = ok and (value > self.low if self.low_open else value >= self.low)
            if self.high is not None:
                ok = ok and (value < self.high if self.high_open else value <= self.high)
        else:
            return None
        return None if ok else f"{self.range_text()}, got {shown(value)}"

    def range_text(self) -> str:
        """The valid values in words: ``must be positive``, ``must be in (0, 1]``, ..."""
        if self.note:
            return self.note
        if self.choices:
            words = [str(c) for c in self.choices]
            listed = " or ".join(words) if len(words) == 2 else "one of " + ", ".join(words)
            return f"must be {listed}"
        low, high = self.low, self.high
        if low is not None and high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"must be in {left}{low:g}, {high:g}{right}"
        if low is not None:
            if low == 0:
                return "must be positive" if self.low_open else "must be >= 0"
            return f"must be {'>' if self.low_open else '>='} {low:g}"
        if high is not None:
            return f"must be {'<' if self.high_open else '<='} {high:g}"
        return "is invalid"


def declared_options(component: Any) -> dict[str, Option]:
    """The options a component class (or instance) declares, its bases' first: the
    ``options`` class attributes along its class hierarchy, a subclass's entries
    replacing its bases' of the same name."""
    cls = component if isinstance(component, type) else type(component)
    merged: dict[str, Option] = {}
    for klass in reversed(cls.__mro__):
        own = klass.__dict__.get("options")
        if isinstance(own, Mapping):
            merged.update(own)
    return merged


def builder_of(component: type) -> Callable[..., Any]:
    """What builds a component: its ``from_options`` classmethod, else the class."""
    return getattr(component, "from_options", None) or component


# --------------------------------------------------------------------------- registries


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=group))


class Registry(Generic[T]):
    """Names of one kind of component -> classes (or factories).

    Args:
        kind: what a component is, in words (``decoder``): error messages say it.
        section, key: the config key whose value names the component (``model.name``);
            its options are keys of the same section.
        package: the module that registers the built-in components (imported on first use).
        group: the entry-point group of third-party components.
        prefix: put before each option's name to make its config key, where two kinds of
            component share a section (``encoder_`` for the encoders of ``model``).
    """

    def __init__(
        self, kind: str, *, section: str, key: str, package: str, group: str, prefix: str = ""
    ) -> None:
        self.kind, self.section, self.key, self.prefix = kind, section, key, prefix
        self.package, self.group = package, group
        self._entries: dict[str, Callable[..., T]] = {}
        self._origins: dict[str, dict[str, str]] = {}
        self._plugins: dict[str, Any] = {}  # name -> entry point, not loaded yet
        self._broken: dict[str, ConfigError] = {}  # plugins that failed to load, and why
        self._loaded = self._loading = False

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.section}.{self.key})"

    @property
    def config_key(self) -> str:
        return f"{self.section}.{self.key}"

    # -- filling --------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a class under ``name``. A class registered from outside
        emu-dgl's own modules is recorded as registered in Python (a later process must
        import it again; a plugin's entry point does that by itself)."""

        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            key = registry_key(name)
            if key in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[key] = obj
            module = getattr(obj, "__module__", "") or ""
            if module != "emu_dgl" and not module.startswith("emu_dgl."):
                self._origins[key] = {"source": "python", "module": module}
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a component registered from Python (tests, notebooks)."""
        key = registry_key(name)
        self._entries.pop(key, None)
        self._origins.pop(key, None)

    def _load(self) -> None:
        """Import the built-in components (every module of the package, so that a new
        component is one new file) and list the plugins' entry points, once."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(
                getattr(package, "__path__", []), f"{self.package}."
            ):
                importlib.import_module(module.name)
            for point in _entry_points(self.group):
                key = registry_key(point.name)
                if key not in self._entries:  # a built-in name is never replaced
                    self._plugins.setdefault(key, point)
            self._loaded = True
        finally:
            self._loading = False

    def _load_plugin(self, key: str) -> Callable[..., T]:
        if key in self._broken:
            raise self._broken[key]
        point = self._plugins[key]
        origin = plugin_origin(point)
        try:
            obj = point.load()
        except Exception as exc:  # noqa: BLE001 (any failure of a third-party import)
            self._broken[key] = ConfigError(
                f"{self.kind} '{key}' comes from the plugin {describe_origin(origin)}, which "
                f"failed to load ({type(exc).__name__}: {shown(str(exc), 160)}); reinstall or fix it"
            )
            raise self._broken[key] from None
        self._entries[key] = obj
        self._origins[key] = origin
        del self._plugins[key]
        return obj

    # -- reading --------------------------------------------------------------------------
    def names(self) -> list[str]:
        self._load()
        return sorted({*self._entries, *self._plugins})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and registry_key(name) in self.names()

    def get(self, name: str) -> Callable[..., T]:
        """The class registered under ``name``, or a one-line :class:`ConfigError` naming
        the nearest valid name and every valid one."""
        self._load()
        key = registry_key(name)
        if key in self._entries:
            return self._entries[key]
        if key in self._plugins:
            return self._load_plugin(key)
        close = difflib.get_close_matches(key, self.names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown {self.kind} '{name}'{hint}; valid: {', '.join(self.names())}")

    def lookup(self, name: Any) -> Callable[..., T] | None:
        """The class of ``name``, or ``None`` when no registry entry (or no loadable plugin)
        has that name: the config defers judging the options of such a component."""
        if not isinstance(name, str):
            return None
        try:
            return self.get(name)
        except ConfigError:
            return None

    def vocabulary(self) -> dict[str, Option]:
        """Every option some loaded component of this kind declares (the first declaration
        by name order), by its config key (``prefix`` + name): the keys a config section may
        hold for this kind. Plugins count once loaded (when a config names them), so an
        unrelated plugin is never imported."""
        self._load()
        merged: dict[str, Option] = {}
        for key in sorted(self._entries):
            for name, option in declared_options(self._entries[key]).items():
                merged.setdefault(self.prefix + name, option)
        return merged

    def options(self, name: str) -> dict[str, Option]:
        """The options the component ``name`` declares (see :func:`declared_options`)."""
        return declared_options(self.get(name))

    def origin(self, name: str) -> dict[str, str]:
        """Where ``name`` comes from: ``{"source": "emu-dgl"}`` (built in), ``{"source":
        "plugin", "plugin": distribution, "version": ..., "entry_point": ...}`` or
        ``{"source": "python", "module": ...}`` (registered by code, not installed)."""
        key = registry_key(name)
        self.get(name)
        return dict(self._origins.get(key, {"source": "emu-dgl"}))

    # -- building -------------------------------------------------------------------------
    def build(
        self, spec: str | T, /, *, context: Mapping[str, Any] | None = None, **options: Any
    ) -> T:
        """An instance passes through; a name is built by its builder (:func:`builder_of`)
        from ``options`` and the entries of ``context`` that the builder takes by name.

        ``options`` must be ones the component declares or its builder takes (a misspelt
        option is a :class:`ConfigError` naming the valid ones, never silently dropped);
        ``context`` holds what a run offers every component of the kind (the graph, the
        device, ...), of which each takes what it needs.
        """
        if not isinstance(spec, str):
            return spec
        component = self.get(spec)
        builder = builder_of(component)
        params = _parameters(builder)
        takes_all = params is None
        unknown = [k for k in options if not takes_all and k not in params]
        if unknown:
            valid = sorted({*declared_options(component), *(params or ())})
            raise ConfigError(
                f"{self.kind} '{spec}' takes no option '{unknown[0]}'; its options: "
                f"{', '.join(valid) or 'none'}"
            )
        given = dict(options)
        for name, value in (context or {}).items():
            if name not in given and (takes_all or name in params):
                given[name] = value
        return builder(**given)


def _parameters(builder: Callable[..., Any]) -> set[str] | None:
    """The keyword parameters of ``builder``; ``None`` when it takes ``**kwargs``."""
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        return None
    names = set()
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if param.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.add(param.name)
    return names


def plugin_origin(point: Any) -> dict[str, str]:
    """The record of an entry point: the distribution (plugin) and its version."""
    dist = getattr(point, "dist", None)
    return {
        "source": "plugin",
        "plugin": getattr(dist, "name", None) or "an installed package",
        "version": getattr(dist, "version", None) or "unknown",
        "entry_point": point.value,
    }


def describe_origin(origin: Mapping[str, Any]) -> str:
    """``emu-dgl-example 0.1.0`` for a plugin, ``code in module m`` for a Python one."""
    if origin.get("source") == "plugin":
        return f"'{origin.get('plugin')}' {origin.get('version')}"
    if origin.get("source") == "python":
        return f"registered by the Python module '{origin.get('module')}'"
    return "emu-dgl"


# The registries. Each names the config key that selects its component and the package
# that registers its built-in components (imported on first use: see Registry._load).
DECODERS: Registry[Any] = Registry(
    "decoder", section="model", key="name", package="emu_dgl.models", group="emu_dgl.decoders"
)
SAMPLERS: Registry[Any] = Registry(
    "sampler", section="sampler", key="name", package="emu_dgl.sampling", group="emu_dgl.samplers"
)
MUTATIONS: Registry[Any] = Registry(
    "mutation", section="emu", key="variant", package="emu_dgl.models", group="emu_dgl.mutations"
)
LOSSES: Registry[Any] = Registry(
    "loss", section="loss", key="name", package="emu_dgl.losses", group="emu_dgl.losses"
)
REGULARIZERS: Registry[Any] = Registry(
    "regularizer",
    section="loss",
    key="regularizer",
    package="emu_dgl.losses",
    group="emu_dgl.regularizers",
)
OPTIMIZERS: Registry[Any] = Registry(
    "optimizer",
    section="train",
    key="optimizer",
    package="emu_dgl.training.optimizers",
    group="emu_dgl.optimizers",
)

#: Every registry by kind, in the order a run builds its components.
KINDS: dict[str, Registry[Any]] = {
    r.kind: r for r in (DECODERS, SAMPLERS, MUTATIONS, LOSSES, REGULARIZERS, OPTIMIZERS)
}


def registries_of(section: str) -> list[Registry[Any]]:
    """The registries whose components keep their options in config section ``section``."""
    return [r for r in KINDS.values() if r.section == section]
