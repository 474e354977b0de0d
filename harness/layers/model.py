"""The streaming language model that wraps a memory mechanism.

Dimension letters: B batch, T positions in a segment, D model width, V vocabulary.

    tokens [B, T] -> embedding -> n_layers x (x + mechanism(norm(x)); x + mlp(norm(x))) -> norm -> head

The model reads long inputs segment by segment (``stream``) and carries one state per layer.
Positions are handled inside the mechanisms (rotary, relative or none), so the wrapper adds no
absolute position embedding that would cap the context length.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from harness.layers.mechanism import Mechanism, MechanismConfig, state_bytes

ModelState = list[dict[str, Any]]


class MLP(nn.Module):
    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.up = nn.Linear(d_model, ratio * d_model)
        self.down = nn.Linear(ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, mixer: Mechanism, d_model: int, mlp_ratio: int):
        super().__init__()
        self.norm_mix = nn.LayerNorm(d_model)
        self.mixer = mixer
        # mlp_ratio 0: the mixer alone (Zoology's blocks with an Identity state mixer)
        self.norm_mlp = nn.LayerNorm(d_model) if mlp_ratio else None
        self.mlp = MLP(d_model, mlp_ratio) if mlp_ratio else None

    def forward(self, x: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        mixed, state = self.mixer(self.norm_mix(x), state)
        x = x + mixed
        return (x if self.mlp is None else x + self.mlp(self.norm_mlp(x))), state


class StreamingLM(nn.Module):
    def __init__(
        self,
        mechanism: type[Mechanism],
        config: MechanismConfig,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        for key, value in dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not isinstance(mlp_ratio, int) or mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be a non-negative integer (0: no MLP), got {mlp_ratio!r}")
        self.mechanism_name = mechanism.name
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(mechanism(d_model, n_heads, config), d_model, mlp_ratio) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(_init_weights)

    @property
    def bounded(self) -> bool:
        return self.blocks[0].mixer.bounded

    def init_state(self, batch_size: int) -> ModelState:
        """A fresh state for ``batch_size`` sequences, on the model's device and dtype."""
        weight = self.head.weight
        return [block.mixer.init_state(batch_size, weight.device, weight.dtype) for block in self.blocks]

    def features(self, tokens: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """Read one segment: tokens [B, T] -> the head's inputs [B, T, D] (the last norm's output) and the new state."""
        x = self.embed(tokens)  # B, T, D
        new_state = []
        for block, block_state in zip(self.blocks, state):
            x, block_state = block(x, block_state)
            new_state.append(block_state)
        return self.norm(x), new_state

    def forward(self, tokens: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """Read one segment: tokens [B, T] -> logits [B, T, V] and the new state."""
        features, new_state = self.features(tokens, state)
        return self.head(features), new_state

    def stream(
        self, tokens: torch.Tensor, state: ModelState, segment_len: int,
        per_segment: Callable[[torch.Tensor], torch.Tensor] | None = None, logits: bool = True,
    ) -> tuple[torch.Tensor, ModelState]:
        """Read a long input in segments of ``segment_len``, carrying the state between them.

        Returns the logits [B, T, V] of every position, or, with ``per_segment``, that function
        of each segment's logits concatenated along positions (``lambda l: l.argmax(-1)`` keeps
        predictions only, so that nothing of size V x T is held). With ``logits=False``, the head's
        inputs [B, T, D] instead of logits (training applies the head at the labelled positions only).
        """
        if segment_len < 1:
            raise ValueError(f"segment_len must be positive, got {segment_len}")
        read = self if logits else self.features
        outputs = []
        for start in range(0, tokens.shape[1], segment_len):
            segment_out, state = read(tokens[:, start : start + segment_len], state)
            outputs.append(segment_out if per_segment is None else per_segment(segment_out))
        return torch.cat(outputs, dim=1), state

    def predict(self, tokens: torch.Tensor, segment_len: int, generated: int = 0) -> tuple[torch.Tensor, ModelState]:
        """Argmax predictions [B, T] from a fresh state: ``predictions[:, t]`` is the guess for token t+1.

        The last ``generated`` positions are decoded greedily: the model reads its own guesses
        there instead of ``tokens`` (whose values at those positions are ignored).
        """
        prompt = tokens.shape[1] - generated
        predictions, state = self.stream(tokens[:, :prompt], self.init_state(len(tokens)), segment_len,
                                         lambda logits: logits.argmax(dim=-1))
        outputs = [predictions]
        for _ in range(generated):
            logits, state = self(outputs[-1][:, -1:], state)
            outputs.append(logits.argmax(dim=-1))
        return torch.cat(outputs, dim=1), state

    def auxiliary_loss(self) -> torch.Tensor | None:
        """Sum of the mechanisms' own training losses from the last forward passes, if any."""
        losses = [loss for block in self.blocks if (loss := block.mixer.pop_auxiliary_loss()) is not None]
        return torch.stack(losses).sum() if losses else None

    @staticmethod
    def state_bytes(state: ModelState) -> int:
        return state_bytes(state)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
