"""Every Auto-class registration of hf_vlmdrive, in one table, without importing any modeling code.

`register_auto_classes()` runs on `import hf_vlmdrive`. It registers each family's config with `AutoConfig`
(configs are light) and, for each row of `AUTO_CLASSES`, a *stand-in* for the model (or processor) class
with the Auto class named in the row. The stand-in knows only the module path and the class name; the
module is imported the first time the class is needed:

    >>> import hf_vlmdrive  # imports no `modeling_*` module
    >>> from transformers import AutoModel
    >>> model = AutoModel.from_config(config)  # doctest: +SKIP  (imports modeling_<family> now)

How: transformers keeps registrations of non-transformers classes in `<mapping>._extra_content`, a dict
from config class to class, which `<mapping>[config_class]` reads (`auto_factory._LazyAutoMapping`). The
stand-in goes into that dict, and the dict is swapped for a `_ResolvingDict`, whose lookups replace a
stand-in by the real class. So `AutoModel.from_pretrained`, `AutoModel.from_config` and
`AutoModel._model_mapping[Config]` all get the real class, as if it had been registered eagerly. Code that
iterates the mapping (`mapping.values()`, lookups by class name) sees the stand-in, a class whose
metaclass imports the real class on any attribute access or call (`from_pretrained`, `config_class`, ...).
If transformers' internals are not as expected, the class is imported and registered eagerly instead
(logged at debug level). Processor rows (AutoProcessor, AutoImageProcessor) wait until something imports
transformers' `processing_auto` / `image_processing_auto` (an import hook runs them then), since importing
those modules costs processing_utils, modeling_utils and torchvision.

`register_auto_classes()` is idempotent, so re-importing or calling it again (e.g. from a DataLoader worker)
is harmless. `register_lazy()` registers one more class the same way.
"""

from __future__ import annotations

import copyreg
import importlib
import importlib.abc
import importlib.util
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from transformers import AutoConfig, PretrainedConfig

from .flamingo.configuration_flamingo import FlamingoConfig
from .geovla.configuration_geovla import GeoVLAConfig, GeoVLAGeometryConfig
from .mapanything.configuration_mapanything import MapAnythingConfig
from .mosaic_gpt.configuration_mosaic_gpt import MosaicGPTConfig
from .robovlm.configuration_robovlm import RoboVLMConfig
from .simlingo.configuration_simlingo import SimLingoConfig
from .waypoint_vlm.configuration_waypoint_vlm import WaypointVLMConfig

logger = logging.getLogger(__name__)


class LazyAutoEntry(NamedTuple):
    """One registration: `auto_class` (a transformers Auto class name) maps `config_class` to `module.name`."""

    auto_class: str  # "AutoModel", "AutoModelForCausalLM", ..., "AutoProcessor", "AutoImageProcessor"
    config_class: type[PretrainedConfig]
    module: str  # absolute, or relative to `hf_vlmdrive.models` (leading dot)
    name: str
    backend: str | None = None  # AutoImageProcessor only: the backend key ("torchvision" when None)


# The one table. A new family adds one line per Auto class; its config is registered with AutoConfig from here.
AUTO_CLASSES: tuple[LazyAutoEntry, ...] = (
    LazyAutoEntry("AutoModel", WaypointVLMConfig, ".waypoint_vlm.modeling_waypoint_vlm", "WaypointVLMModel"),
    LazyAutoEntry("AutoModel", GeoVLAConfig, ".geovla.modeling_geovla", "GeoVLAForActionPrediction"),
    LazyAutoEntry("AutoModel", GeoVLAGeometryConfig, ".geovla.modeling_geovla", "GeoVLAGeometryEncoder"),
    LazyAutoEntry("AutoModel", MapAnythingConfig, ".mapanything.modeling_mapanything", "MapAnythingModel"),
    LazyAutoEntry("AutoModel", SimLingoConfig, ".simlingo.modeling_simlingo", "SimLingoForWaypointPrediction"),
    LazyAutoEntry("AutoModel", RoboVLMConfig, ".robovlm.modeling_robovlm", "RoboVLMForActionPrediction"),
    LazyAutoEntry("AutoModel", FlamingoConfig, ".flamingo.modeling_flamingo", "FlamingoForConditionalGeneration"),
    LazyAutoEntry("AutoModelForImageTextToText", FlamingoConfig, ".flamingo.modeling_flamingo",
                  "FlamingoForConditionalGeneration"),
    # MosaicGPT (MPT-1B, model_type "mosaic_gpt", a name transformers does not own): Flamingo's LM for OpenFlamingo-3B.
    LazyAutoEntry("AutoModel", MosaicGPTConfig, ".mosaic_gpt.modeling_mosaic_gpt", "MosaicGPTModel"),
    LazyAutoEntry("AutoModelForCausalLM", MosaicGPTConfig, ".mosaic_gpt.modeling_mosaic_gpt", "MosaicGPTForCausalLM"),
    # Processors register the same way, once something imports transformers' processing_auto (see
    # `register_lazy`).
    LazyAutoEntry("AutoProcessor", WaypointVLMConfig, ".waypoint_vlm.processing_waypoint_vlm", "WaypointVLMProcessor"),
    LazyAutoEntry("AutoProcessor", GeoVLAConfig, ".geovla.processing_geovla", "GeoVLAProcessor"),
    LazyAutoEntry("AutoProcessor", RoboVLMConfig, ".robovlm.processing_robovlm", "RoboVLMProcessor"),
    LazyAutoEntry("AutoProcessor", FlamingoConfig, ".flamingo.processing_flamingo", "FlamingoProcessor"),
    # SimLingo's processor is an image processor (no tokenizer): AutoProcessor falls back to AutoImageProcessor.
    LazyAutoEntry("AutoImageProcessor", MapAnythingConfig, ".mapanything.image_processing_mapanything",
                  "MapAnythingImageProcessor", "pil"),
    LazyAutoEntry("AutoImageProcessor", SimLingoConfig, ".simlingo.processing_simlingo", "SimLingoProcessor", "pil"),
)

# Auto classes whose registry is a module-level mapping instead of `<AutoClass>._model_mapping`:
# name -> (module, mapping attribute, whether the mapping's values are {backend: class} dicts).
_PROCESSING_MAPPINGS = {
    "AutoProcessor": ("transformers.models.auto.processing_auto", "PROCESSOR_MAPPING", False),
    "AutoImageProcessor": ("transformers.models.auto.image_processing_auto", "IMAGE_PROCESSOR_MAPPING", True),
}
_DEFAULT_BACKEND = "torchvision"

_REGISTERED = False


def _import_class(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


class _LazyClass(type):
    """Metaclass of the stand-ins. A stand-in is a class (transformers checks `isinstance(x, type)` for
    processors) with the real class's `__module__`, `__name__` and `__qualname__`; any other attribute,
    a call, `isinstance` and `issubclass` import the real class and delegate to it."""

    def __getattr__(cls, attr: str) -> Any:  # only called for attributes the stand-in itself lacks
        return getattr(cls._lazy_resolve(), attr)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._lazy_resolve()(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        target = cls._lazy_peek()  # no instance can exist before the real module is imported
        return target is not None and isinstance(obj, target)

    def __subclasscheck__(cls, sub: type) -> bool:
        target = cls._lazy_peek()
        return sub is cls or (target is not None and issubclass(sub, target))

    def __repr__(cls) -> str:
        return f"<lazy class '{cls.__module__}.{cls.__qualname__}'>"

    def _lazy_peek(cls) -> type | None:
        """The real class if its module is imported already, else None (imports nothing)."""
        if "_lazy_target" not in cls.__dict__ and cls.__module__ not in sys.modules:
            return None
        return cls._lazy_resolve()

    def _lazy_resolve(cls) -> type:
        target = cls.__dict__.get("_lazy_target")
        if target is None:
            target = _import_class(cls.__module__, cls.__qualname__)
            expected = cls.__dict__["_lazy_config_class"]
            config_class = getattr(target, "config_class", None)
            if expected is not None and isinstance(config_class, type) and config_class.__name__ != expected.__name__:
                # the check `AutoModel.register` does when it is given the class itself
                raise ValueError(
                    f"{cls.__module__}.{cls.__qualname__}.config_class is {config_class}, but it is registered for "
                    f"{expected}; fix hf_vlmdrive.models.auto.AUTO_CLASSES"
                )
            cls._lazy_target = target
        return target


# Pickling a stand-in (e.g. within a pickled Auto mapping) pickles a reference to the real class.
copyreg.pickle(_LazyClass, lambda cls: (_import_class, (cls.__module__, cls.__qualname__)))


def lazy_class(module: str, name: str, config_class: type[PretrainedConfig] | None = None) -> type:
    """A stand-in for `module.name` that imports it on first use; `module` may be relative to hf_vlmdrive.models."""
    module = importlib.util.resolve_name(module, __package__)
    namespace = {"__module__": module, "__qualname__": name, "__doc__": f"Lazy stand-in for {module}.{name}."}
    namespace["_lazy_config_class"] = config_class
    return _LazyClass(name, (), namespace)


def resolve_lazy(obj: Any) -> Any:
    """The real class behind a stand-in (importing it); anything else is returned as is."""
    if isinstance(obj, _LazyClass):
        return obj._lazy_resolve()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, _LazyClass):
                obj[key] = value._lazy_resolve()
    return obj


class _ResolvingDict(dict):
    """Replaces an Auto mapping's `_extra_content`: looking a config class up turns its stand-in into the real
    class (stored back, so the import happens once). Iteration (`values()`, `items()`) imports nothing."""

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        resolved = resolve_lazy(value)
        if resolved is not value:
            super().__setitem__(key, resolved)
        return resolved

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


def _lazy_registry(auto_class: str) -> tuple[Any, bool] | None:
    """(transformers' mapping for `auto_class`, whether its values are {backend: class} dicts), its
    `_extra_content` made a `_ResolvingDict`; None if the mapping does not look as expected."""
    if auto_class in _PROCESSING_MAPPINGS:
        module, attr, by_backend = _PROCESSING_MAPPINGS[auto_class]
        mapping = getattr(importlib.import_module(module), attr, None)
    else:
        import transformers

        mapping, by_backend = getattr(getattr(transformers, auto_class), "_model_mapping", None), False
    extra = getattr(mapping, "_extra_content", None)
    if not callable(getattr(mapping, "register", None)) or not isinstance(extra, dict):
        return None
    if type(extra) is dict:
        mapping._extra_content = _ResolvingDict(extra)
    return mapping, by_backend


def _register_eagerly(auto_class: str, config_class: type[PretrainedConfig], cls: type, backend: str | None) -> None:
    import transformers

    auto = getattr(transformers, auto_class)
    if _PROCESSING_MAPPINGS.get(auto_class, (None, None, False))[2]:
        auto.register(config_class, image_processor_classes={backend or _DEFAULT_BACKEND: cls}, exist_ok=True)
    else:
        auto.register(config_class, cls, exist_ok=True)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs callbacks right after a module has been executed, the first time something imports it.

    On `sys.meta_path` only while callbacks are pending. It finds nothing itself: it asks the other finders
    for the spec and wraps its loader, so the module is created and executed by its own loader."""

    def __init__(self) -> None:
        self.pending: dict[str, list[Callable[[ModuleType], None]]] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRun(spec.loader, self, fullname)
        return spec

    def add(self, fullname: str, callback: Callable[[ModuleType], None]) -> None:
        self.pending.setdefault(fullname, []).append(callback)
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def run(self, fullname: str, module: ModuleType) -> None:
        callbacks = self.pending.pop(fullname, [])
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        for callback in callbacks:
            try:
                callback(module)
            except Exception:  # never break the user's import of transformers
                logger.warning("hf_vlmdrive: a registration waiting for %s failed", fullname, exc_info=True)


class _ThenRun(importlib.abc.Loader):
    """Wraps a module's loader: executes the module with it, then runs the callbacks waiting for it."""

    def __init__(self, loader: Any, hook: _AfterImport, fullname: str) -> None:
        self._loader, self._hook, self._fullname = loader, hook, fullname

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader  # the module keeps its own loader (e.g. for importlib.reload)
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._hook.run(self._fullname, module)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)


_AFTER_IMPORT = _AfterImport()


def _when_imported(fullname: str, callback: Callable[[ModuleType], None]) -> None:
    """Call `callback(module)` now if `fullname` is imported, else right after something imports it."""
    module = sys.modules.get(fullname)
    if module is not None:
        callback(module)
    else:
        _AFTER_IMPORT.add(fullname, callback)


def _register(auto_class: str, config_class: type[PretrainedConfig], stand_in: type, backend: str | None) -> None:
    registry = _lazy_registry(auto_class)
    if registry is None:
        logger.debug(
            "transformers' %s registry is not the expected _LazyAutoMapping; importing %s.%s eagerly",
            auto_class, stand_in.__module__, stand_in.__qualname__,
        )  # fmt: skip
        _register_eagerly(auto_class, config_class, resolve_lazy(stand_in), backend)
        return
    mapping, by_backend = registry
    if by_backend:
        classes = dict(dict.get(mapping._extra_content, config_class) or {})  # keep other backends, unresolved
        classes[backend or _DEFAULT_BACKEND] = stand_in
        mapping.register(config_class, classes, exist_ok=True)
    else:
        mapping.register(config_class, stand_in, exist_ok=True)


def register_lazy(
    auto_class: str,
    config_class: type[PretrainedConfig],
    module: str,
    name: str,
    backend: str | None = None,
) -> type:
    """Register `module.name` with the transformers Auto class named `auto_class` for `config_class`, without
    importing `module` (it is imported on first use); also registers `config_class` with `AutoConfig`.

    `auto_class` is a model Auto class ("AutoModel", "AutoModelForCausalLM", ...), "AutoProcessor" or
    "AutoImageProcessor" (then `backend` is the backend key, "torchvision" by default); other Auto classes
    are registered eagerly. `module` is absolute or relative to `hf_vlmdrive.models`. Returns the stand-in.

    Processors are registered once transformers' `processing_auto` / `image_processing_auto` module is
    imported (every use of AutoProcessor / AutoImageProcessor imports it): importing it here would cost
    `import hf_vlmdrive` processing_utils, modeling_utils and torchvision, up to 2 s.
    """
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    processing = _PROCESSING_MAPPINGS.get(auto_class)
    stand_in = lazy_class(module, name, None if processing else config_class)
    if processing:
        _when_imported(processing[0], lambda _module: _register(auto_class, config_class, stand_in, backend))
    else:
        _register(auto_class, config_class, stand_in, backend)
    return stand_in


def register_auto_classes() -> None:
    """Register every row of `AUTO_CLASSES` (and each row's config with `AutoConfig`), importing no model."""
    global _REGISTERED
    if _REGISTERED:
        return
    for entry in AUTO_CLASSES:
        register_lazy(*entry)
    _REGISTERED = True


__all__ = ["AUTO_CLASSES", "LazyAutoEntry", "lazy_class", "register_auto_classes", "register_lazy", "resolve_lazy"]
