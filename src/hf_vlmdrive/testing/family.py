"""The shared test contract of a model family (transformers' `ModelTesterMixin`, LeRobot's policy tests).

A family's test module subclasses [`FamilyContract`] once and supplies a tiny config, inputs with labels
and the family's facts (what is frozen, which blocks are checkpointed, which configs and inputs are
invalid); every `test_*` method below then runs for that family under pytest:

```python
class TestWaypointVLMFamily(FamilyContract):
    config_class = WaypointVLMConfig
    model_class = WaypointVLMModel
    output_keys = ("waypoints",)
    frozen_prefixes = ("vision_model.",)
    ...

    def build_config(self, **overrides):
        return WaypointVLMConfig(**{"vision_config": TINY_SIGLIP, **overrides})

    def build_inputs(self, model, batch_size=2):
        return {"pixel_values": ..., "labels": ...}
```

The checks (one test each):

1. `test_auto_round_trip_is_exact`: `save_pretrained` -> `AutoModel.from_pretrained` gives the same class,
   a bit-identical state dict and bit-identical outputs on `output_keys` (eval mode).
2. `test_frozen_parts_stay_frozen`: parameters under `frozen_prefixes` have no gradient and their modules
   stay in eval mode after `model.train()`, built and after loading; everything else trains.
3. `test_gradient_checkpointing`: with checkpointing the loss and every gradient are unchanged, and every
   block of `checkpointed_block_types` runs its forward twice per forward + backward (once without).
4. `test_config_errors_name_field_and_value`: each of `bad_config_cases` raises a ValueError naming the
   field and the offending value.
5. `test_bad_inputs_raise_clear_errors`: each of `bad_input_cases` raises a ValueError with the expected text.
6. `test_processor_round_trip`: `save_pretrained` -> `AutoProcessor.from_pretrained` gives the same class
   and identical outputs (skipped when `build_processor` returns None).
7. `test_short_training_run`: AdamW on one fixed batch lowers the loss, changes every trainable parameter
   that received a non-zero gradient and leaves every frozen parameter bit-identical.
8. `test_config_round_trip_and_registration`: `to_dict` / `from_dict` (and through JSON) round trip;
   `model_type` is registered with `AutoConfig` and the model with `AutoModel`.
9. `test_batch_equivalence`: each sample run alone (a batch of one, eval mode) gives the outputs it gets inside
   the batch, within `batch_atol` / `batch_rtol` (1e-5 / 1e-4: float32 kernels may sum in another order).
10. `test_attn_implementation`: the family declares `_supports_sdpa` truthfully (True exactly when every
   transformers backbone it builds supports SDPA); where it does, `from_pretrained(dir, attn_implementation=X)`
   reaches every backbone for X in eager / sdpa, and both give the same outputs within `attn_atol` / `attn_rtol`.
11. `test_no_split_modules_are_built`: every class the family names in `_no_split_modules` is built (by the
   tiny config or one of `variant_overrides`), and every checkpointed block lies inside a no-split module.
12. `test_from_backbone_signature`: `from_backbone(name_or_path, *, revision=None, token=None, dtype=None,
   **config_kwargs)` (`from_backbones(a, b, *, ...)` for two backbones), a classmethod annotated to return the
   model class.
13. `test_one_init_marker`: the only marker on the family's modules is `keep_own_init`'s (plus transformers'
   own `_is_hf_initialized`): no other private flag steers `_init_weights`.

Importing this module imports `hf_vlmdrive`, which registers every family with the Auto classes.

Determinism: every model is built after `torch.manual_seed(0)`, and each forward that is compared runs
after the same seed, so a forward that samples (flow-matching noise, dropout) is still comparable; families
should nevertheless pass fixed noise / times in `build_inputs` and zero dropout in `checkpointing_overrides`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoProcessor, PretrainedConfig, PreTrainedModel

__all__ = ["FamilyContract", "count_block_forwards", "module_under"]


def module_under(name: str, prefixes: tuple[str, ...]) -> bool:
    """True when the parameter / module `name` lies under one of the dotted `prefixes` (`"vision_model."`)."""
    return any(name.startswith(p) or name + "." == p for p in prefixes)


class count_block_forwards:  # noqa: N801 - used as a context manager, like torch's profilers
    """Count how often the body of each block of the given types runs, as a context manager.

    transformers 5's `GradientCheckpointingLayer` checkpoints the layer's `forward`, not `__call__`, so that
    module hooks (FSDP2's) stay outside the checkpoint: a hook on the block itself fires once even when the
    block is recomputed in the backward pass. The recomputation is seen inside the block instead: a forward
    pre-hook on every submodule notes, per block, the submodule the block calls first, and that
    submodule's calls are the block's count. (A pre-hook, because non-reentrant checkpointing stops the
    recomputation as soon as the last saved activation is rebuilt, possibly inside a later submodule.)

    `counts()` returns {block qualified name: forward count}.
    """

    def __init__(self, model: nn.Module, block_types: tuple[type[nn.Module], ...]):
        self.blocks = {
            name: m for name, m in model.named_modules() if block_types and isinstance(m, block_types)
        }
        self._first: dict[str, str] = {}
        self._calls: dict[tuple[str, str], int] = {}
        self._handles: list = []

    def __enter__(self) -> count_block_forwards:
        for block_name, block in self.blocks.items():
            children = [(n, m) for n, m in block.named_modules() if n]
            if not children:
                raise AssertionError(
                    f"{block_name} ({type(block).__name__}) has no submodules, so its recomputation cannot be "
                    "observed (hooks on the block itself run outside the checkpoint)"
                )
            for sub_name, sub in children:
                self._handles.append(sub.register_forward_pre_hook(self._hook(block_name, sub_name)))
        return self

    def _hook(self, block_name: str, sub_name: str) -> Callable:
        def hook(module, args):
            self._first.setdefault(block_name, sub_name)
            key = (block_name, sub_name)
            self._calls[key] = self._calls.get(key, 0) + 1

        return hook

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def counts(self) -> dict[str, int]:
        """{block name: how many times its forward body ran} (0 for a block that never ran)."""
        return {b: self._calls.get((b, self._first[b]), 0) if b in self._first else 0 for b in self.blocks}


def _tensors_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


@functools.cache
def _own_attribute(cls: type, key: str) -> bool:
    """True when a class of `cls`'s MRO sets `self.<key>` itself (its own state, not a marker set from outside)."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(rf"self\.{re.escape(key)}\b", source):
            return True
    return False


class FamilyContract:
    """What every model family must satisfy; a family's test class inherits it and supplies the hooks.

    Class attributes to set:
        config_class: the family's `PretrainedConfig` subclass.
        model_class: the model class `AutoModel` (or the Auto class named by `auto_class`) maps `config_class` to.
        auto_class: the transformers Auto class the round trips load with ("AutoModel" unless the class is
            registered with another one, e.g. "AutoModelForCausalLM").
        output_keys: output fields compared exactly in the round trip (each must be a tensor).
        frozen_prefixes: parameter-name prefixes (`"vision_model."`) frozen with
            `build_config(**freezing_overrides)`; every other parameter must be trainable.
        freezing_overrides: config overrides for the freezing and training checks (default: none), e.g.
            `{"freeze_vision": True}` for a family whose tower trains by default.
        checkpointed_block_types: the repeated blocks gradient checkpointing must recompute, with
            `build_config(**checkpointing_overrides)`. Empty means the family has none; the flag must then
            still be accepted, and losses and gradients must still be unchanged.
        checkpointing_overrides: config overrides for the checkpointing check: zero every dropout there,
            and make the checkpointed blocks trainable (a frozen tower runs without autograd, so it is
            rightly not checkpointed).
        bad_config_cases: `(overrides, field name, bad value)`: `build_config(**overrides)` must raise a
            ValueError whose message contains the field name and `repr(value)` or `str(value)`.
        bad_input_cases: `(mutate, text)`: `mutate(inputs)` changes a fresh inputs dict in place (or returns
            a new one); the forward must then raise a ValueError whose message contains `text`.
        training_steps, learning_rate: the short training run (AdamW, no weight decay, one fixed batch).
        max_loss_ratio: the loss after training must be below this fraction of the loss before.
        grad_atol, grad_rtol: tolerance of the gradient comparison with / without checkpointing.
        batch_output_keys: outputs compared between a sample alone and inside a batch (default: `output_keys`
            without `loss`, a batch mean); batch_atol, batch_rtol: the tolerance of that comparison.
        attn_atol, attn_rtol: tolerance of the eager vs SDPA comparison.
        variant_overrides: other configs (overrides of the tiny one) whose modules the structural checks
            (`_no_split_modules`, init markers) also build, e.g. `{"head_type": "gpt"}` for another head.

    Methods to supply: `build_config`, `build_inputs`; optionally `prepare_model`, `post_load`,
    `build_processor` + `processor_inputs`, `output_fields` + `loss_of` (a forward without a `ModelOutput`
    loss), `select_sample` + `sample_output` (inputs or outputs not laid out batch-first).
    """

    config_class: ClassVar[type[PretrainedConfig]]
    model_class: ClassVar[type[PreTrainedModel]]
    auto_class: ClassVar[str] = "AutoModel"
    output_keys: ClassVar[tuple[str, ...]] = ()
    frozen_prefixes: ClassVar[tuple[str, ...]] = ()
    freezing_overrides: ClassVar[dict[str, Any]] = {}
    checkpointed_block_types: ClassVar[tuple[type[nn.Module], ...]] = ()
    checkpointing_overrides: ClassVar[dict[str, Any]] = {}
    bad_config_cases: ClassVar[list[tuple[dict[str, Any], str, Any]]] = []
    bad_input_cases: ClassVar[list[tuple[Callable[[dict], dict | None], str]]] = []
    training_steps: ClassVar[int] = 20
    learning_rate: ClassVar[float] = 1e-3
    max_loss_ratio: ClassVar[float] = 0.9
    grad_atol: ClassVar[float] = 1e-6
    grad_rtol: ClassVar[float] = 1e-5
    processor_skip_reason: ClassVar[str] = "the family has no processor (build_processor returned None)"
    batch_output_keys: ClassVar[tuple[str, ...] | None] = None
    batch_atol: ClassVar[float] = 1e-5
    batch_rtol: ClassVar[float] = 1e-4
    attn_atol: ClassVar[float] = 1e-5
    attn_rtol: ClassVar[float] = 1e-4
    variant_overrides: ClassVar[list[dict[str, Any]]] = []

    # ------------------------------------------------------------------ hooks
    def build_config(self, **overrides) -> PretrainedConfig:
        """A tiny config of the family (hidden 16-64, 1-2 layers, small images) with `overrides` applied."""
        raise NotImplementedError(f"{type(self).__name__} must define build_config(**overrides)")

    def build_inputs(self, model: PreTrainedModel, batch_size: int = 2) -> dict[str, Any]:
        """Forward kwargs for `model`, labels included so that `.loss` is returned, and deterministic."""
        raise NotImplementedError(f"{type(self).__name__} must define build_inputs(model, batch_size=2)")

    def prepare_model(self, model: PreTrainedModel) -> None:
        """Called on every freshly built model: install state the forward needs (normalisation statistics),
        perturb zero-initialised layers so that outputs and gradients depend on the inputs."""

    def post_load(self, loaded: PreTrainedModel, original: PreTrainedModel) -> None:
        """Called on every model loaded with `AutoModel.from_pretrained`: assert that family state saved beside
        the weights (e.g. `norm_stats.json`) came back, equal to `original`'s."""

    def output_fields(self, outputs: Any) -> Mapping[str, Any]:
        """The model's outputs by name (`output_keys` index it): the `ModelOutput` itself by default; a family whose
        forward returns a bare tensor names it here (`{"tokens": outputs}`)."""
        return outputs

    def loss_of(self, outputs: Any) -> torch.Tensor:
        """The scalar the checkpointing and training checks differentiate: `outputs.loss` by default. A component
        without a loss of its own (an encoder) supplies a fixed surrogate of its outputs here."""
        return outputs.loss

    def select_sample(self, inputs: dict[str, Any], index: int, batch_size: int) -> dict[str, Any]:
        """The inputs of sample `index` alone (batch of one) cut from `inputs` (a batch of `batch_size`).

        Default: every tensor / list whose leading size is `batch_size` is cut to `[index : index + 1]`, anything
        else is kept. Override for inputs laid out otherwise (flattened image patches, repeated flow draws)."""
        out = {}
        for key, value in inputs.items():
            if isinstance(value, (torch.Tensor, list, tuple)) and len(value) == batch_size:
                out[key] = value[index : index + 1]
            else:
                out[key] = value
        return out

    def sample_output(self, value: torch.Tensor, index: int, batch_size: int) -> torch.Tensor:
        """Rows of the batched output `value` that belong to sample `index`: `value[index : index + 1]` by default."""
        return value[index : index + 1]

    def build_processor(self, tmp_path: Path) -> Any | None:
        """The family's processor (an instance with `save_pretrained` and `__call__`), or None when it has none."""
        return None

    def processor_inputs(self) -> dict[str, Any] | None:
        """Keyword arguments of one processor call (images, text, ...)."""
        return None

    # ------------------------------------------------------------------ helpers
    def build_model(self, **overrides) -> PreTrainedModel:
        """`model_class(build_config(**overrides))` after `torch.manual_seed(0)`, then `prepare_model`."""
        torch.manual_seed(0)
        model = self.model_class(self.build_config(**overrides))
        self.prepare_model(model)
        return model

    def _auto(self) -> type:
        """The transformers Auto class named by `auto_class`."""
        return AutoModel if self.auto_class == "AutoModel" else getattr(transformers, self.auto_class)

    def _inputs(self, model: PreTrainedModel, batch_size: int = 2) -> dict[str, Any]:
        torch.manual_seed(1)
        return self.build_inputs(model, batch_size=batch_size)

    @staticmethod
    def _forward(model: PreTrainedModel, inputs: dict[str, Any]):
        torch.manual_seed(2)  # the same RNG stream for every forward that is compared
        return model(**copy.deepcopy(inputs))

    def _load(self, model: PreTrainedModel, directory: Path) -> PreTrainedModel:
        model.save_pretrained(directory)
        loaded = self._auto().from_pretrained(directory)
        assert type(loaded) is self.model_class, (
            f"{self.auto_class}.from_pretrained gave {type(loaded).__name__}, expected {self.model_class.__name__}"
        )
        self.post_load(loaded, model)
        return loaded

    def _assert_frozen_state(self, model: PreTrainedModel, when: str) -> None:
        params = dict(model.named_parameters())
        for prefix in self.frozen_prefixes:
            assert any(module_under(n, (prefix,)) for n in params), (
                f"frozen prefix {prefix!r} matches no parameter of {type(model).__name__} ({when})"
            )
        wrong_trainable = [
            n for n, p in params.items() if module_under(n, self.frozen_prefixes) and p.requires_grad
        ]
        wrong_frozen = [
            n for n, p in params.items() if not module_under(n, self.frozen_prefixes) and not p.requires_grad
        ]
        assert not wrong_trainable, (
            f"{when}: parameters under {self.frozen_prefixes} require grad: {wrong_trainable[:5]}"
        )
        assert not wrong_frozen, (
            f"{when}: parameters outside {self.frozen_prefixes} are frozen: {wrong_frozen[:5]}"
        )
        if model.training:
            # A module in eval mode inside the frozen part, every other module in train mode.
            in_train = [
                n
                for n, m in model.named_modules()
                if n and module_under(n, self.frozen_prefixes) and m.training
            ]
            assert not in_train, f"{when}: frozen modules in train mode after model.train(): {in_train[:5]}"
            in_eval = [
                n
                for n, m in model.named_modules()
                if n and not module_under(n, self.frozen_prefixes) and not m.training
            ]
            assert not in_eval, f"{when}: trainable modules in eval mode after model.train(): {in_eval[:5]}"

    # ------------------------------------------------------------------ 1. Auto round trip
    def test_auto_round_trip_is_exact(self, tmp_path: Path) -> None:
        """save_pretrained -> AutoModel.from_pretrained: same class, identical state dict and outputs."""
        assert self.output_keys, f"{type(self).__name__}.output_keys is empty: name the outputs to compare"
        model = self.build_model().eval()
        inputs = self._inputs(model)
        with torch.no_grad():
            expected = self._forward(model, inputs)
        loaded = self._load(model, tmp_path).eval()
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert set(state) == set(loaded_state), (
            f"state dict keys differ: only saved {sorted(set(state) - set(loaded_state))[:5]}, "
            f"only loaded {sorted(set(loaded_state) - set(state))[:5]}"
        )
        changed = [
            k
            for k in state
            if state[k].dtype != loaded_state[k].dtype or not torch.equal(state[k], loaded_state[k])
        ]
        assert not changed, f"tensors differ after loading: {changed[:5]}"
        with torch.no_grad():
            got = self._forward(loaded, inputs)
        for key in self.output_keys:
            a, b = self.output_fields(expected)[key], self.output_fields(got)[key]
            assert isinstance(a, torch.Tensor), f"output {key!r} is {type(a).__name__}, not a tensor"
            assert torch.isfinite(a).all(), f"output {key!r} is not finite"
            assert a.count_nonzero() > 0, (
                f"output {key!r} is all zeros, so comparing it proves nothing: perturb zero-initialised "
                "layers in prepare_model"
            )
            assert torch.equal(a, b), (
                f"output {key!r} differs after loading: max |diff| {(a - b).abs().max()}"
            )

    # ------------------------------------------------------------------ 2. freezing
    def test_frozen_parts_stay_frozen(self, tmp_path: Path) -> None:
        """Frozen parameters: no grad, modules in eval mode after model.train(); built and after loading."""
        model = self.build_model(**self.freezing_overrides)
        self._assert_frozen_state(model.train(), "built, after model.train()")
        loaded = self._load(model, tmp_path)
        self._assert_frozen_state(loaded, "after from_pretrained")
        self._assert_frozen_state(loaded.train(), "after from_pretrained and model.train()")
        self._assert_frozen_state(loaded.eval().train(), "after model.eval().train()")

    # ------------------------------------------------------------------ 3. gradient checkpointing
    def checkpointing_run(
        self, overrides: dict[str, Any], block_types: tuple[type[nn.Module], ...]
    ) -> tuple[PreTrainedModel, dict[str, int], dict[str, int]]:
        """One forward + backward without, then with gradient checkpointing, on the same model and inputs.

        Asserts that the loss and every gradient are unchanged (`grad_atol`, `grad_rtol`) and returns the
        model (holding the checkpointed run's gradients) and the forward counts of the blocks of
        `block_types` without and with checkpointing ({block name: count}).
        """
        assert self.model_class.supports_gradient_checkpointing, (
            f"{self.model_class.__name__} does not support it"
        )
        model = self.build_model(**overrides).train()
        inputs = self._inputs(model)

        def step() -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, int]]:
            model.zero_grad(set_to_none=True)
            with count_block_forwards(model, block_types) as counter:
                loss = self.loss_of(self._forward(model, inputs))
                loss.backward()
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
            return loss.detach(), grads, counter.counts()

        loss_plain, grads_plain, counts_plain = step()
        # What Trainer calls (`gradient_checkpointing_enable` is its deprecated alias in transformers 5).
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_activation_checkpointing, "checkpointing did not switch on"
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_gradient_checkpointing, "checkpointing did not switch on"
        model.train()
        loss_ckpt, grads_ckpt, counts_ckpt = step()

        assert grads_plain, "no parameter received a gradient"
        torch.testing.assert_close(loss_ckpt, loss_plain, atol=self.grad_atol, rtol=0.0)
        assert set(grads_ckpt) == set(grads_plain), (
            f"parameters with gradients differ: {sorted(set(grads_ckpt) ^ set(grads_plain))[:5]}"
        )
        for name, grad in grads_plain.items():
            torch.testing.assert_close(
                grads_ckpt[name],
                grad,
                atol=self.grad_atol,
                rtol=self.grad_rtol,
                msg=lambda m, name=name: f"gradient of {name}: {m}",
            )
        return model, counts_plain, counts_ckpt

    def test_gradient_checkpointing(self) -> None:
        """Same loss and gradients with checkpointing; each checkpointed block recomputes (2 forwards, not 1)."""
        model, counts_plain, counts_ckpt = self.checkpointing_run(
            self.checkpointing_overrides, self.checkpointed_block_types
        )
        for block_type in self.checkpointed_block_types:
            names = [n for n, m in model.named_modules() if isinstance(m, block_type)]
            assert names, f"{type(model).__name__} has no {block_type.__name__} blocks"
            got_grad = [
                p
                for n in names
                for p in model.get_submodule(n).parameters()
                if p.grad is not None and p.grad.count_nonzero() > 0
            ]
            assert got_grad, (
                f"no {block_type.__name__} parameter got a non-zero gradient, so the checkpointing check is "
                "vacuous: make the blocks trainable (checkpointing_overrides) and perturb zero inits (prepare_model)"
            )
            plain = {n: counts_plain[n] for n in names}
            assert all(c == 1 for c in plain.values()), (
                f"{block_type.__name__} forwards without checkpointing: {plain}"
            )
            # Blocks on the backward path are recomputed; a block whose output the loss does not use (e.g. a
            # tower's last layer when an earlier layer's features are taken) has no backward, so no recompute.
            on_path = [
                n for n in names if any(p.grad is not None for p in model.get_submodule(n).parameters())
            ]
            ckpt = {n: counts_ckpt[n] for n in on_path}
            assert all(c == 2 for c in ckpt.values()), (
                f"{block_type.__name__} forwards with checkpointing (2 = recomputed in backward): {ckpt}"
            )

    # ------------------------------------------------------------------ 4. config errors
    def test_config_errors_name_field_and_value(self) -> None:
        """Each bad config raises a ValueError naming the field and the offending value."""
        assert self.bad_config_cases, f"{type(self).__name__}.bad_config_cases is empty"
        problems = []
        for overrides, field, value in self.bad_config_cases:
            try:
                self.build_config(**overrides)
            except ValueError as err:
                message = str(err)
                if field not in message or (repr(value) not in message and str(value) not in message):
                    problems.append(f"{overrides}: message lacks {field!r} or {value!r}: {message}")
            else:
                problems.append(f"{overrides}: no ValueError")
        assert not problems, "\n".join(problems)

    # ------------------------------------------------------------------ 5. input errors
    def test_bad_inputs_raise_clear_errors(self) -> None:
        """Each bad input raises a ValueError containing the expected text (e.g. the expected shape)."""
        assert self.bad_input_cases, f"{type(self).__name__}.bad_input_cases is empty"
        model = self.build_model().eval()
        problems = []
        for i, (mutate, text) in enumerate(self.bad_input_cases):
            inputs = self._inputs(model)
            changed = mutate(inputs)
            inputs = changed if changed is not None else inputs
            try:
                with torch.no_grad():
                    model(**inputs)
            except ValueError as err:
                if text not in str(err):
                    problems.append(
                        f"case {i} ({getattr(mutate, '__name__', mutate)}): {text!r} not in {str(err)!r}"
                    )
            else:
                problems.append(
                    f"case {i} ({getattr(mutate, '__name__', mutate)}): no ValueError (expected {text!r})"
                )
        assert not problems, "\n".join(problems)

    # ------------------------------------------------------------------ 6. processor
    def test_processor_round_trip(self, tmp_path: Path) -> None:
        """save_pretrained -> AutoProcessor.from_pretrained: same class, identical outputs."""
        processor = self.build_processor(tmp_path)
        if processor is None:
            pytest.skip(self.processor_skip_reason)
        directory = tmp_path / "processor"
        processor.save_pretrained(directory)
        loaded = AutoProcessor.from_pretrained(directory)
        assert type(loaded) is type(processor), (
            f"AutoProcessor gave {type(loaded).__name__}, expected {type(processor).__name__}"
        )
        kwargs = self.processor_inputs()
        assert kwargs, "processor_inputs() returned nothing to process"
        expected = processor(**copy.deepcopy(kwargs))
        got = loaded(**copy.deepcopy(kwargs))
        keys = set(expected.keys()) if isinstance(expected, Mapping) else None
        if keys is not None:
            assert keys == set(got.keys()), f"output keys differ: {keys ^ set(got.keys())}"
            assert any(isinstance(v, torch.Tensor) for v in expected.values()), (
                "the processor returned no tensors"
            )
            for key in keys:
                assert _tensors_equal(expected[key], got[key]), (
                    f"processor output {key!r} differs after loading"
                )
        else:
            assert _tensors_equal(expected, got), "processor output differs after loading"

    # ------------------------------------------------------------------ 7. training
    def test_short_training_run(self) -> None:
        """AdamW on one batch: loss goes down, trainable parameters with gradients change, frozen ones do not."""
        model = self.build_model(**self.freezing_overrides)
        inputs = self._inputs(model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert trainable, "no trainable parameter"
        optimizer = torch.optim.AdamW(trainable, lr=self.learning_rate, weight_decay=0.0)

        def eval_loss() -> float:
            model.eval()
            with torch.no_grad():
                return float(self.loss_of(self._forward(model, inputs)))

        loss_before = eval_loss()
        model.train()
        got_gradient: set[str] = set()
        for _ in range(self.training_steps):
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss_of(model(**copy.deepcopy(inputs)))
            assert torch.isfinite(loss), f"non-finite loss {loss}"
            loss.backward()
            got_gradient |= {
                n for n, p in model.named_parameters() if p.grad is not None and p.grad.count_nonzero()
            }
            optimizer.step()
        loss_after = eval_loss()

        assert loss_after < self.max_loss_ratio * loss_before, (
            f"loss {loss_before:.5f} -> {loss_after:.5f} after {self.training_steps} steps (lr {self.learning_rate})"
        )
        params = dict(model.named_parameters())
        # Frozen: declared so (`frozen_prefixes`) or without requires_grad.
        frozen = {
            n for n, p in params.items() if not p.requires_grad or module_under(n, self.frozen_prefixes)
        }
        frozen_changed = [n for n in sorted(frozen) if not torch.equal(params[n], before[n])]
        assert not frozen_changed, f"frozen parameters changed: {frozen_changed[:5]}"
        frozen_with_grad = sorted(got_gradient & frozen)
        assert not frozen_with_grad, f"frozen parameters received gradients: {frozen_with_grad[:5]}"
        assert got_gradient, "no parameter received a non-zero gradient"
        unchanged = [n for n in sorted(got_gradient) if torch.equal(params[n], before[n])]
        assert not unchanged, f"parameters with gradients did not change: {unchanged[:5]}"

    # ------------------------------------------------------------------ 8. config
    def test_config_round_trip_and_registration(self) -> None:
        """to_dict / from_dict (also through JSON) round trip; model_type registered with the Auto classes."""
        config = self.build_model().config
        assert type(config) is self.config_class
        as_dict = config.to_dict()
        again = self.config_class.from_dict(as_dict)
        assert type(again) is self.config_class and again.to_dict() == as_dict, (
            "to_dict/from_dict changed the config"
        )
        from_json = self.config_class.from_dict(json.loads(config.to_json_string()))
        assert from_json.to_dict() == as_dict, "the config changed through JSON"

        model_type = self.config_class.model_type
        assert re.fullmatch(r"[a-z0-9_]+", model_type or ""), f"model_type {model_type!r}"
        assert type(AutoConfig.for_model(model_type)) is self.config_class, f"{model_type!r} not registered"
        via_auto = AutoConfig.for_model(model_type, **{k: v for k, v in as_dict.items() if k != "model_type"})
        assert type(via_auto) is self.config_class and via_auto.to_dict() == as_dict, (
            "AutoConfig.for_model changed it"
        )
        assert self._auto()._model_mapping[self.config_class] is self.model_class

    # ------------------------------------------------------------------ 9. batch equivalence
    def test_batch_equivalence(self) -> None:
        """Each sample alone (batch of one, eval mode) gives the outputs it gets inside the batch."""
        keys = self.batch_output_keys
        keys = tuple(k for k in self.output_keys if k != "loss") if keys is None else keys
        assert keys, f"{type(self).__name__}: no output to compare (set batch_output_keys)"
        model = self.build_model().eval()
        batch_size = 2
        inputs = self._inputs(model, batch_size=batch_size)
        with torch.no_grad():
            batched = self.output_fields(self._forward(model, inputs))
            for index in range(batch_size):
                alone = self.output_fields(self._forward(model, self.select_sample(inputs, index, batch_size)))
                for key in keys:
                    want = self.sample_output(batched[key], index, batch_size)
                    assert want.count_nonzero() > 0, f"output {key!r} is all zeros: the comparison proves nothing"
                    torch.testing.assert_close(
                        alone[key], want, atol=self.batch_atol, rtol=self.batch_rtol,
                        msg=lambda m, key=key, index=index: (
                            f"output {key!r} of sample {index} alone differs from the same sample inside a batch "
                            f"of {batch_size}: {m}"
                        ),
                    )

    # ------------------------------------------------------------------ 10. attention implementation
    @staticmethod
    def backbones(model: nn.Module) -> dict[str, PreTrainedModel]:
        """{name: module} of the transformers models inside `model` (outermost ones; not `model` itself)."""
        found: dict[str, PreTrainedModel] = {}
        for name, module in model.named_modules():
            if name and isinstance(module, PreTrainedModel) and not any(name.startswith(f"{n}.") for n in found):
                found[name] = module
        return found

    def test_attn_implementation(self, tmp_path: Path) -> None:
        """`_supports_sdpa` is declared truthfully; eager and sdpa reach every backbone and give equal outputs."""
        model = self.build_model().eval()
        backbones = self.backbones(model)
        if not backbones:
            pytest.skip(f"{self.model_class.__name__} wraps no transformers backbone")
        all_sdpa = all(type(m)._supports_sdpa for m in backbones.values())
        declared = bool(getattr(self.model_class, "_supports_sdpa", False))
        kinds = {n: f"{type(m).__name__} (_supports_sdpa={type(m)._supports_sdpa})" for n, m in backbones.items()}
        assert declared == all_sdpa, (
            f"{self.model_class.__name__}._supports_sdpa is {declared}, but its backbones are {kinds}: declare "
            f"_supports_sdpa = {all_sdpa} on the family's PreTrainedModel"
        )
        if not declared:
            pytest.skip(f"a backbone of {self.model_class.__name__} has no SDPA attention: {kinds}")
        model.save_pretrained(tmp_path)
        inputs = self._inputs(model)
        outputs = {}
        for implementation in ("eager", "sdpa"):
            loaded = self.model_class.from_pretrained(tmp_path, attn_implementation=implementation).eval()
            self.post_load(loaded, model)
            got = {n: m.config._attn_implementation for n, m in self.backbones(loaded).items()}
            wrong = {n: v for n, v in got.items() if v != implementation}
            assert not wrong, (
                f"from_pretrained(attn_implementation={implementation!r}) did not reach these backbones: {wrong}"
            )
            with torch.no_grad():
                outputs[implementation] = self.output_fields(self._forward(loaded, inputs))
        for key in self.output_keys:
            torch.testing.assert_close(
                outputs["sdpa"][key], outputs["eager"][key], atol=self.attn_atol, rtol=self.attn_rtol,
                msg=lambda m, key=key: f"output {key!r} with sdpa differs from eager: {m}",
            )

    # ------------------------------------------------------------------ 11. _no_split_modules
    def _structural_builds(self) -> list[tuple[dict[str, Any], PreTrainedModel]]:
        return [({}, self.build_model())] + [(o, self.build_model(**o)) for o in self.variant_overrides]

    def test_no_split_modules_are_built(self) -> None:
        """Each class named in the family's `_no_split_modules` is built; each checkpointed block is inside one."""
        declared = list(getattr(self.model_class, "_no_split_modules", None) or [])
        builds = self._structural_builds()
        built = {type(m).__name__ for _, model in builds for m in model.modules()}
        not_built = [name for name in declared if name not in built]
        assert not not_built, (
            f"{self.model_class.__name__}._no_split_modules names {not_built}, which the model does not build "
            f"(with the tiny config or variant_overrides {self.variant_overrides}); name the classes it builds"
        )
        model = builds[0][1]
        no_split = set(model._no_split_modules or ())  # the family's names plus its backbones' (post_init)
        modules = dict(model.named_modules())
        outside = []
        for name, module in modules.items():
            if self.checkpointed_block_types and isinstance(module, self.checkpointed_block_types):
                parts = name.split(".")
                chain = [modules[".".join(parts[:i])] for i in range(1, len(parts) + 1)]
                if not any(type(m).__name__ in no_split for m in chain):
                    outside.append(f"{name} ({type(module).__name__})")
        assert not outside, (
            f"checkpointed blocks outside every no-split module: {outside[:5]}; add their class to "
            f"{self.model_class.__name__}._no_split_modules (now {declared})"
        )

    # ------------------------------------------------------------------ 12. from_backbone(s)
    def test_from_backbone_signature(self) -> None:
        """from_backbone(name, *, revision=None, token=None, dtype=None, **config_kwargs) (two names for
        from_backbones), a classmethod annotated to return the model."""
        loaders = {n: inspect.getattr_static(self.model_class, n) for n in ("from_backbone", "from_backbones")
                   if hasattr(self.model_class, n)}
        if not loaders:
            pytest.skip(f"{self.model_class.__name__} has no from_backbone(s) (it is loaded by its parent family)")
        assert len(loaders) == 1, f"{self.model_class.__name__} has both {sorted(loaders)}: keep one"
        (name, raw), = loaders.items()
        where = f"{self.model_class.__name__}.{name}"
        assert isinstance(raw, classmethod), f"{where} must be a classmethod"
        signature = inspect.signature(getattr(self.model_class, name))
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        expected = 1 if name == "from_backbone" else 2
        assert len(positional) == expected, (
            f"{where} takes {len(positional)} positional arguments ({[p.name for p in positional]}), expected "
            f"{expected}: the backbone name(s) or path(s), everything else keyword-only"
        )
        for key in ("revision", "token", "dtype"):
            p = signature.parameters.get(key)
            assert p is not None and p.kind is p.KEYWORD_ONLY and p.default is None, (
                f"{where} must take `{key}=None` as a keyword-only argument (passed to transformers' "
                f"from_pretrained), got {p}"
            )
        assert any(p.kind is p.VAR_KEYWORD for p in params), f"{where} must take **config_kwargs (config fields)"
        returns = signature.return_annotation
        assert returns in (self.model_class, self.model_class.__name__), (
            f"{where} must return the model ({self.model_class.__name__}), annotated {returns!r}"
        )
        assert inspect.getdoc(getattr(self.model_class, name)), f"{where} has no docstring"

    # ------------------------------------------------------------------ 13. one init marker
    ALLOWED_MARKERS: ClassVar[frozenset[str]] = frozenset({"_keep_own_init", "_is_hf_initialized"})

    def test_one_init_marker(self) -> None:
        """No flag other than `keep_own_init`'s steers initialisation: the family's modules carry no other
        private True flag set from outside (`module._x = True`), which `_init_weights` would read."""
        base = set(vars(nn.Module()))
        found: dict[str, list[str]] = {}
        for overrides, model in self._structural_builds():
            # The transformers backbones are not the family's: their own flags are theirs.
            inner = [f"{n}." for n in self.backbones(model)]
            for name, module in model.named_modules():
                if any(name.startswith(p) for p in inner):
                    continue
                for key, value in vars(module).items():
                    if (key.startswith("_") and key not in base and value is True and key not in self.ALLOWED_MARKERS
                            and not _own_attribute(type(module), key)):
                        found.setdefault(key, []).append(f"{name or '<model>'} ({type(module).__name__}){overrides or ''}")
        assert not found, (
            f"{self.model_class.__name__} marks modules with {sorted(found)} ({ {k: v[:3] for k, v in found.items()} }); "
            "use the one documented marker, models/common/init.py::keep_own_init, or initialise the module from its "
            "parent's branch of _init_weights"
        )
