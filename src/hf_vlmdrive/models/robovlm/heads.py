"""RoboVLMs' policy heads over the context vectors of a history window (`robovlms/model/policy_head/base_policy.py`).

Module and parameter names follow RoboVLMs (`rnn`, `actions.mlp.<i>`, `gripper.mlp.<i>`, `gpt`, `fc`, `mlp`), so a
RoboVLMs `act_head.*` state dict maps onto `policy_head.*` key for key (see scripts/convert_robovlms_checkpoint.py).

Shapes: input `tok_seq` (B, L, latent, D) -> flattened per frame (B, L, latent * D) (RoboVLMs `down_sample="none"`)
-> features (B, L, H) -> `actions` (B, L, chunk, n_bounded) in [-1, 1] (tanh) and `gripper` (B, L, chunk) logits
(or None without a gripper).
"""

from __future__ import annotations

import torch
from torch import nn


class MLPTanhHead(nn.Module):
    """RoboVLMs `MLPTanhHead` (Linear-ReLU x3 -> Linear -> Tanh; widths 1024, 512, 256 by default)."""

    def __init__(self, in_features: int, out_features: int, hidden_sizes: list[int], tanh: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_features))
        if tanh:
            layers.append(nn.Tanh())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class _OutputHeads(nn.Module):
    """The `actions` (tanh) and `gripper` (logit; RoboVLMs' `MLPSigmoidHead` has its Sigmoid commented out) MLPs."""

    def _build_outputs(self, width: int, config) -> None:
        chunk = config.action_chunk_size
        self.chunk = chunk
        self.num_bounded = config.num_bounded
        self.actions = MLPTanhHead(width, chunk * config.num_bounded, config.head_mlp_sizes, tanh=True)
        self.gripper = MLPTanhHead(width, chunk, config.head_mlp_sizes, tanh=False) if config.use_gripper else None

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, w = x.shape[:2]
        actions = self.actions(x).reshape(b, w, self.chunk, self.num_bounded)  # (B, L, chunk, n_bounded)
        gripper = self.gripper(x).reshape(b, w, self.chunk) if self.gripper is not None else None  # (B, L, chunk)
        return actions, gripper


class LSTMPolicyHead(_OutputHeads):
    """RoboVLMs `LSTMDecoder`: a unidirectional LSTM (4 layers, hidden 1024) over the window.

    Training / a whole window: the LSTM runs over the L frames from a zero state. Streaming (`step`, one frame at a
    time): frames are remembered; while at most `window_size` are remembered the LSTM continues from its carried
    state; afterwards the oldest frame is dropped and the LSTM is re-run from a zero state over the last
    `window_size` frames (exactly RoboVLMs' `history_memory` logic). `reset()` forgets everything.
    """

    def __init__(self, config):
        super().__init__()
        in_features = config.hidden_size * config.num_action_tokens
        hidden = config.head_hidden_size * config.num_action_tokens
        self.window_size = config.window_size
        self.rnn = nn.LSTM(in_features, hidden, num_layers=config.head_num_layers, bidirectional=False,
                           batch_first=True, dropout=config.head_dropout if config.head_num_layers > 1 else 0.0)
        self._build_outputs(hidden, config)
        self.reset()

    def reset(self) -> None:
        """Forget the streaming history (call between episodes)."""
        self.history: list[torch.Tensor] = []
        self.hidden_state = None

    def forward(self, tok_seq: torch.Tensor):
        x = tok_seq.flatten(2)  # (B, L, latent * D)
        x, _ = self.rnn(x)  # (B, L, H)
        return self._outputs(x)

    def step(self, tok_seq: torch.Tensor):
        """One frame (B, 1, latent, D) with the remembered history -> outputs for that frame (L = 1)."""
        x = tok_seq.flatten(2)
        self.history.append(x)
        if len(self.history) <= self.window_size:
            out, self.hidden_state = self.rnn(x, self.hidden_state)
        else:
            del self.history[: len(self.history) - self.window_size]
            self.hidden_state = None
            out, _ = self.rnn(torch.cat(self.history, dim=1))
        return self._outputs(out[:, -1:])


class MLPTrunk(nn.Sequential):
    """The trunk of RoboVLMs' `FCDecoder`: Linear(in, in/2) -> ReLU -> Linear(in/2, H). Its own type (its state dict
    is a plain `nn.Sequential`'s) so that `_init_weights` recognises it: xavier-uniform weights and zero biases, as
    RoboVLMs' `initialize_param` sets the MLP heads."""

    def __init__(self, in_features: int, hidden: int):
        half = max(1, in_features // 2)
        super().__init__(nn.Linear(in_features, half), nn.ReLU(), nn.Linear(half, hidden))


class MLPPolicyHead(_OutputHeads):
    """RoboVLMs `FCDecoder` (`down_sample="none"`): per frame, no history. Linear(in, in/2) -> ReLU ->
    Linear(in/2, H), then the output MLPs."""

    def __init__(self, config):
        super().__init__()
        in_features = config.hidden_size * config.num_action_tokens
        hidden = config.head_hidden_size * config.num_action_tokens
        self.mlp = MLPTrunk(in_features, hidden)
        self._build_outputs(hidden, config)

    def reset(self) -> None:
        """Nothing to forget (the MLP head has no history)."""

    def forward(self, tok_seq: torch.Tensor):
        return self._outputs(self.mlp(tok_seq.flatten(2)))

    def step(self, tok_seq: torch.Tensor):
        return self.forward(tok_seq)


class GPTPolicyHead(_OutputHeads):
    """RoboVLMs `GPTDecoder`: `fc` (in -> H when they differ) then a causal GPT-2 over the window (learned positions,
    `window_size` of them); streaming re-runs the GPT over the remembered last `window_size` frames."""

    def __init__(self, config):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        in_features = config.hidden_size * config.num_action_tokens
        hidden = config.head_hidden_size * config.num_action_tokens
        self.window_size = config.window_size
        self.fc = nn.Linear(in_features, hidden) if in_features != hidden else nn.Identity()
        # vocab_size=1: the GPT is fed embeddings only (RoboVLMs' trajectory GPT-2 has no token embedding).
        gpt_config = GPT2Config(vocab_size=1, n_embd=hidden, n_layer=config.gpt_num_layers, n_head=config.gpt_num_heads,
                                n_positions=config.window_size, resid_pdrop=config.head_dropout,
                                embd_pdrop=config.head_dropout, attn_pdrop=config.head_dropout)
        self.gpt = GPT2Model(gpt_config)
        self._build_outputs(hidden, config)
        self.reset()

    def reset(self) -> None:
        """Forget the streaming history (call between episodes)."""
        self.history: list[torch.Tensor] = []

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.window_size:
            raise ValueError(f"the GPT head takes at most window_size={self.window_size} frames, got {x.shape[1]}")
        return self.gpt(inputs_embeds=x, use_cache=False).last_hidden_state

    def forward(self, tok_seq: torch.Tensor):
        return self._outputs(self._run(self.fc(tok_seq.flatten(2))))

    def step(self, tok_seq: torch.Tensor):
        self.history.append(self.fc(tok_seq.flatten(2)))
        del self.history[: max(0, len(self.history) - self.window_size)]
        out = self._run(torch.cat(self.history, dim=1))
        return self._outputs(out[:, -1:])


HEADS = {"lstm": LSTMPolicyHead, "mlp": MLPPolicyHead, "gpt": GPTPolicyHead}


def build_policy_head(config) -> nn.Module:
    """The head named by `config.head_type`."""
    return HEADS[config.head_type](config)


__all__ = ["GPTPolicyHead", "HEADS", "LSTMPolicyHead", "MLPPolicyHead", "MLPTanhHead", "MLPTrunk", "build_policy_head"]
