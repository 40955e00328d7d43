"""The Gemmini-TL hardware template: the three searched parameters, constants, area model.

The template (spec §1) is a weight-stationary pe_dim x pe_dim systolic array with a scratchpad
(weights + inputs, 1-byte words) and an accumulator (outputs, 4-byte words, one bank per PE
column). DOSA searches only ``pe_dim``, the scratchpad size and the accumulator size; everything
else (bandwidths, per-access energies) is a fixed function of those three numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch

# --- Per-access energies (pJ). The Timeloop build the paper pins charges every storage level with
# its built-in "pat" SRAM/DRAM model (Accelergy only sets the MAC energy): see sram_energy_per_word.
E_MAC = 0.5608
E_DRAM = 100.0  # pat DRAM: 200 pJ per 16 bits, so 100 pJ per 8-bit word
DRAM_BLOCK_WORDS = 64  # DRAM is charged per whole 64-word block of each action type
REGISTER_KB = 8 / 8192  # one 8-bit register entry


def sram_energy_per_word(size_kb: Any, word_bits: int) -> Any:
    """pat's SRAM energy per word access: linear in the array size through Eyeriss's two points.

    0.5 KB costs 1 unit and 100 KB costs 6 units of a 16-bit access; a ``word_bits`` word costs
    ``word_bits / 16`` of that. ``size_kb`` is one instance's width x depth; works on floats,
    numpy arrays and (differentiably) torch tensors.
    """
    return (1.0 + (size_kb - 0.5) * (5.0 / 99.5)) * (word_bits / 16)


E_REG = sram_energy_per_word(REGISTER_KB, 8)

# --- Bandwidths (words per cycle), spec §1.1; the registers have none (unbounded). ---
BW_ACC_PER_COLUMN = 2.0  # per active PE column (Ksp)
BW_SP_PER_PE_DIM = 2.0  # scratchpad: 2 * pe_dim words per cycle
BW_DRAM = 8.0

SP_WORD_BYTES = 1
ACC_WORD_BYTES = 4


class HardwareError(ValueError):
    """A hardware configuration that is not a legal Gemmini-TL instance."""


@dataclass(frozen=True)
class Hardware:
    """One Gemmini-TL instance: PE array side, scratchpad KB and total accumulator KB."""

    pe_dim: int
    sp_kb: float
    acc_kb: float

    def __post_init__(self) -> None:
        if isinstance(self.pe_dim, bool) or not isinstance(self.pe_dim, int | np.integer):
            raise HardwareError(f"pe_dim must be an integer >= 1, got {self.pe_dim!r}")
        if self.pe_dim < 1:
            raise HardwareError(f"pe_dim must be an integer >= 1, got {self.pe_dim}")
        for field in ("sp_kb", "acc_kb"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise HardwareError(f"{field} must be a positive number of KB, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise HardwareError(f"{field} must be a positive number of KB, got {value}")
        object.__setattr__(self, "pe_dim", int(self.pe_dim))
        object.__setattr__(self, "sp_kb", float(self.sp_kb))
        object.__setattr__(self, "acc_kb", float(self.acc_kb))

    @property
    def sp_words(self) -> float:
        return self.sp_kb * 1024 / SP_WORD_BYTES

    @property
    def acc_words_per_bank(self) -> float:
        return self.acc_kb * 1024 / ACC_WORD_BYTES / self.pe_dim

    def as_tuple(self) -> tuple[int, float, float]:
        return (self.pe_dim, self.sp_kb, self.acc_kb)

    def to_dict(self) -> dict[str, float]:
        return {"pe_dim": self.pe_dim, "sp_kb": self.sp_kb, "acc_kb": self.acc_kb}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hardware:
        allowed = {"pe_dim", "sp_kb", "acc_kb"}
        unknown = set(data) - allowed
        if unknown:
            raise HardwareError(f"unknown hardware field(s) {sorted(unknown)}; "
                                f"allowed {sorted(allowed)}")
        missing = allowed - set(data)
        if missing:
            raise HardwareError(f"missing hardware field(s) {sorted(missing)}")
        pe = data["pe_dim"]
        if isinstance(pe, float) and pe.is_integer():
            pe = int(pe)  # JSON may carry 16.0
        return cls(pe, data["sp_kb"], data["acc_kb"])

    def area_mm2(self) -> float:
        """Area estimate from the shipped area model (fit to Timeloop's ``target.area``)."""
        return float(area_model().predict(self.pe_dim, self.sp_kb, self.acc_kb))

    def to_arch_columns(self) -> dict[str, Any]:
        """The published ``arch.*`` columns for this instance (spec §1.3)."""
        pe = self.pe_dim
        acc_depth = math.ceil(self.acc_kb * 1024 / (ACC_WORD_BYTES * pe))
        sp_depth = math.ceil(self.sp_kb * 1024 / pe)
        return {
            "arch.pe": pe * pe,
            "arch.mac": 1,
            "arch.meshX": pe,
            "arch.mem1_entries": acc_depth,
            "arch.mem1_depth": acc_depth,
            "arch.mem1_width": 32,
            "arch.mem1_instances": pe,
            "arch.mem1_word-bits": 32,
            "arch.mem1_network-word-bits": 16,
            "arch.mem1_n_rdwr_ports": 2,
            "arch.mem1_n_banks": 2,
            "arch.mem1_shared_bandwidth": 2,
            "arch.mem2_entries": sp_depth * pe,
            "arch.mem2_depth": sp_depth,
            "arch.mem2_width": 8 * pe,
            "arch.mem2_instances": 1,
            "arch.mem2_meshX": 1,
            "arch.mem2_word-bits": 8,
            "arch.mem2_n_rdwr_ports": 1,
            "arch.mem2_n_banks": 1,
            "arch.mem2_shared_bandwidth": 2 * pe,
            "arch.name": "gemmini",
        }


#: Gemmini's default configuration in the Gemmini repository (16x16, 256 KB SP, 64 KB ACC).
GEMMINI_DEFAULT = Hardware(16, 256.0, 64.0)
#: The "base" Gemmini used by the DOSA code (arch.yaml and calibration.py): 128 KB / 32 KB.
DOSA_BASE = Hardware(16, 128.0, 32.0)

ARCH_COLUMNS = ("arch.pe", "arch.mem1_depth", "arch.mem1_width", "arch.mem1_instances",
                "arch.mem2_depth", "arch.mem2_width", "arch.mem2_instances")


def hardware_from_arch_columns(frame: Any) -> np.ndarray:
    """Inverse of :meth:`Hardware.to_arch_columns`, vectorised: float64 array [n, 3].

    Exact (no ceiling) so the model sees the real buffer sizes of each published row.
    """
    missing = [c for c in ARCH_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"missing arch column(s) {missing}; need {list(ARCH_COLUMNS)}")
    pe = np.rint(np.sqrt(np.asarray(frame["arch.pe"], dtype=np.float64)))
    sp = (np.asarray(frame["arch.mem2_depth"], dtype=np.float64)
          * np.asarray(frame["arch.mem2_width"], dtype=np.float64)
          * np.asarray(frame["arch.mem2_instances"], dtype=np.float64) / 8 / 1024)
    acc = (np.asarray(frame["arch.mem1_depth"], dtype=np.float64)
           * np.asarray(frame["arch.mem1_width"], dtype=np.float64)
           * np.asarray(frame["arch.mem1_instances"], dtype=np.float64) / 8 / 1024)
    return np.stack([pe, sp, acc], axis=1)


# ----------------------------------------------------------------------------------------------
# Area model
# ----------------------------------------------------------------------------------------------
# Timeloop's ``target.area`` is a pure function of (pe_dim, sp_kb, acc_kb) (CACTI-like SRAM
# areas plus pe_dim^2 MACs). We model it additively, monotone by construction:
#   area = a * pe^2 + b * pe + F_sp(log2 sp) + pe * H_sp(log2 sp)
#          + F_acc(log2 acc) + pe * H_acc(log2 acc)
# where F and H are piecewise linear in log2(KB) between power-of-two knots (the sizes the
# dataset samples), extrapolated linearly, written as a level plus non-negative increments. With
# every coefficient >= 0 the area never decreases as any parameter grows, so a search under an
# area bound cannot exploit a fitting artefact. (An unconstrained fit of a per-bank accumulator
# term reaches 0.9 % mean error but shrinks in places as buffers grow; this one is 2.7 % / 10 %.)
SIZE_KNOTS = tuple(float(k) for k in range(0, 12))  # log2 KB: 1 KB .. 2 MB


def _interp_basis(x: torch.Tensor, knots: tuple[float, ...]) -> torch.Tensor:
    """Piecewise-linear (hat) basis with linear extrapolation past both ends -> [n, len(knots)]."""
    k = torch.tensor(knots, dtype=x.dtype, device=x.device)
    n = len(knots)
    seg = torch.clamp(torch.searchsorted(k, x.detach().contiguous(), right=True) - 1, 0, n - 2)
    left, right = k[seg], k[seg + 1]
    w = (x - left) / (right - left)
    basis = torch.zeros(x.shape + (n,), dtype=x.dtype, device=x.device)
    basis = basis.scatter(-1, seg.unsqueeze(-1), (1 - w).unsqueeze(-1))
    basis = basis.scatter_add(-1, (seg + 1).unsqueeze(-1), w.unsqueeze(-1))
    return basis


def _monotone_basis(x: torch.Tensor) -> torch.Tensor:
    """Level + increments form of the hat basis: column i is the sum of hats i.. (non-increasing
    weights), so non-negative coefficients give a non-decreasing function of x."""
    hats = _interp_basis(x, SIZE_KNOTS)
    return torch.flip(torch.cumsum(torch.flip(hats, [-1]), -1), [-1])


def area_features(pe: torch.Tensor, sp_kb: torch.Tensor, acc_kb: torch.Tensor) -> torch.Tensor:
    """Design matrix of the area model; differentiable in all three parameters."""
    sp = _monotone_basis(torch.log2(sp_kb))
    acc = _monotone_basis(torch.log2(acc_kb))
    pe_col = pe.unsqueeze(-1)
    return torch.cat([pe_col * pe_col, pe_col, sp, sp * pe_col, acc, acc * pe_col], dim=-1)


@dataclass(frozen=True)
class AreaModel:
    """Fitted (non-negative) coefficients of :func:`area_features`; predicts mm²."""

    coef: tuple[float, ...]

    def predict_torch(self, pe: torch.Tensor, sp_kb: torch.Tensor,
                      acc_kb: torch.Tensor) -> torch.Tensor:
        feats = area_features(pe, sp_kb, acc_kb)
        return feats @ torch.tensor(self.coef, dtype=feats.dtype, device=feats.device)

    def predict(self, pe: Any, sp_kb: Any, acc_kb: Any) -> np.ndarray:
        args = [torch.tensor(np.asarray(v, dtype=np.float64)) for v in (pe, sp_kb, acc_kb)]
        return self.predict_torch(*args).numpy()

    def to_json(self) -> str:
        return json.dumps({"features": "see dosa.hardware.area_features",
                           "size_knots_log2_kb": SIZE_KNOTS, "coef": list(self.coef)}, indent=1)


def fit_area_model(pe: Any, sp_kb: Any, acc_kb: Any, area_mm2: Any) -> AreaModel:
    """Relative least-squares fit with non-negative coefficients (monotone area model)."""
    from scipy.optimize import lsq_linear

    feats = area_features(*(torch.tensor(np.asarray(v, dtype=np.float64))
                            for v in (pe, sp_kb, acc_kb))).numpy()
    y = np.asarray(area_mm2, dtype=np.float64)
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("area_mm2 must be positive and finite")
    res = lsq_linear(feats / y[:, None], np.ones_like(y), bounds=(0.0, np.inf), method="bvls")
    if not res.success:
        raise RuntimeError(f"area model fit failed: {res.message}")
    return AreaModel(tuple(float(c) for c in res.x))


_AREA_MODEL: AreaModel | None = None


def area_model() -> AreaModel:
    """The shipped area model (``dosa/area_model.json``, produced by :func:`fit_area_model`)."""
    global _AREA_MODEL
    if _AREA_MODEL is None:
        text = resources.files("dosa").joinpath("area_model.json").read_text()
        _AREA_MODEL = AreaModel(tuple(json.loads(text)["coef"]))
    return _AREA_MODEL


# ----------------------------------------------------------------------------------------------
# Sanity limits: where the area model can be trusted, and absurd array sizes
# ----------------------------------------------------------------------------------------------
#: Largest fixed ``pe_dim`` a search accepts. The baselines' grid stops at 128 and DOSA's min-HW
#: at the largest C or K of a layer (2048 for ResNet-50); a 1024x1024 array already means a
#: million MACs, so anything larger is a typo, not a design point.
PE_DIM_LIMIT = 1024

#: The box (inclusive) the shipped area model was fitted on: the 95 distinct configurations of
#: the published Timeloop dataset have pe_dim in {2, 4, ..., 128} and scratchpad and
#: accumulator sizes in {1, 2, ..., 2048} KB, which is also the baselines' random grid (§1.2).
AREA_FIT_RANGE: dict[str, tuple[float, float]] = {
    "pe_dim": (2, 128),
    "sp_kb": (1.0, 2048.0),
    "acc_kb": (1.0, 2048.0),
}


def check_pe_dim(value: object, name: str = "pe_dim") -> int:
    """``value`` as an int in [1, :data:`PE_DIM_LIMIT`], else a ValueError naming ``name``.

    Catches absurd fixed array sizes (``--pe-dim 16000``) before a search spends time on them.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) \
            or not 1 <= value <= PE_DIM_LIMIT:
        raise ValueError(f"{name} must be an integer in [1, {PE_DIM_LIMIT}], got {value!r}")
    return int(value)


def area_model_range_issue(hw: Hardware) -> str | None:
    """Why ``hw``'s area is an extrapolation of the area model, in words; None when it is not.

    The fitted range is the box :data:`AREA_FIT_RANGE`: 2 <= pe_dim <= 128,
    1 <= sp_kb <= 2048 and 1 <= acc_kb <= 2048. Inside it the model interpolates (piecewise
    linear in log2 KB between power-of-two knots, quadratic in pe_dim), so any point of the box,
    powers of two or not, counts as in range. Outside it the area is a linear extrapolation that
    no measurement backs, which a reader of the result should be told about.
    """
    outside = []
    for field, (low, high) in AREA_FIT_RANGE.items():
        value = getattr(hw, field)
        if not low <= value <= high:
            outside.append(f"{field}={value:g} is outside {low:g}..{high:g}")
    if not outside:
        return None
    return ("area model extrapolated: " + "; ".join(outside) + " (the model was fitted on the "
            "95 published Timeloop configurations: pe_dim 2..128, sp_kb and acc_kb 1..2048 KB)")
