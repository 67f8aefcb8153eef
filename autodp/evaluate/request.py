"""R(f) as a self-contained, picklable request -> result call (a SLURM job runs the same)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Where or how an evaluation runs, writes or reports, not what it computes: left out of its signature
# (every process engine gives the rows the local one gives: tests/test_process.py).
LOCATIONS = ("out_dir", "crm_dir", "tracking", "process")


def signature_of(request: Any, locations: tuple[str, ...]) -> str:
    """A request's identity: the hash of its fields but ``locations`` (Dora-style)."""
    blob = {k: v for k, v in asdict(request).items() if k not in locations}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EvalRequest:
    strategy: str                # Strategy.key
    train: dict[str, Any]        # {"path", "limit"}: the data f is applied to
    val: dict[str, Any]          # {"path", "offset", "limit"}: the validation set scored on
    target: dict[str, Any]       # validation rows reserved as target examples (LESS), never scored
    pool: dict[str, Any]         # {"path", "limit"}: the raw pool a scratch base is pre-warmed on
    teams: dict[str, Any]        # conf/teams: operators per team
    finetune: dict[str, Any]     # conf/finetune
    eval: dict[str, Any]         # conf/eval: metric, batch size
    seed: int                    # the first fine-tune seed
    out_dir: str                 # where the processed dataset is written
    screener: str | None = None  # a saved screening model F: with it, PTS is on (paper 3.3.3)
    crm_dir: str | None = None   # the cache-and-reuse cache: with it, CRM is on (paper 3.3.4)
    tracking: dict[str, Any] | None = None  # the search's W&B settings: the evaluation logs to its group
    seeds: int = 1               # fine-tunes of the processed data, with seeds seed, seed+1, ...
    process: dict[str, Any] | None = None  # conf/process: the engine operators run on (None: local)

    @property
    def fit_seeds(self) -> list[int]:
        """The same for every strategy of a search, so scores pair up seed by seed."""
        return [self.seed + i for i in range(self.seeds)]

    @classmethod
    def from_config(cls, cfg: Any, train: dict, val: dict, target: dict, pool: dict, out_dir: str,
                    seed: int | None = None, screener: str | None = None) -> "EvalRequest":  # argument order: autodp.data.specs.DataSpecs
        """The request for 'no processing' under a composed config; ``replace`` sets the strategy."""
        from omegaconf import OmegaConf

        crm_dir = cfg.cache.dir if cfg.accel.crm.enabled else None
        return cls(strategy="none", train=train, val=val, target=target, pool=pool,
                   teams=OmegaConf.to_container(cfg.teams, resolve=True),
                   finetune=OmegaConf.to_container(cfg.finetune, resolve=True),
                   eval={"metric": cfg.eval.metric, "batch_size": cfg.eval.batch_size,
                         **({"generation": OmegaConf.to_container(cfg.eval.generation, resolve=True)}
                            if cfg.eval.get("generation") else {})},
                   seed=cfg.seed if seed is None else seed, out_dir=out_dir, screener=screener,
                   crm_dir=crm_dir, seeds=cfg.eval.seeds,
                   process=OmegaConf.to_container(cfg.process, resolve=True) if "process" in cfg else None)

    @property
    def signature(self) -> str:
        """Identity of the evaluation: everything that can change its score."""
        return signature_of(self, LOCATIONS)

    def failed(self, error: str, trace: str) -> "EvalResult":
        """The result of a job that ended without one (autodp/cluster/jobs.py)."""
        return EvalResult(strategy=self.strategy, signature=self.signature, status="failed", error=error,
                          traceback=trace)


@dataclass
class EvalResult:
    strategy: str
    signature: str
    status: str                                   # "ok" | "failed"
    score: float | None = None                    # r = -(answer NLL per character), mean over seeds
    seed_scores: list[float] = field(default_factory=list)  # r per fine-tune seed, in request.fit_seeds order
    row_scores: list[list[float]] = field(default_factory=list)  # per seed, r of each scored row (eval.per_row)
    metrics: dict[str, float] = field(default_factory=dict)
    ops: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    rows_in: int = 0
    rows_out: int = 0
    data_fingerprint: str | None = None
    processed_path: str | None = None
    score_cached: bool = False                    # every seed's metrics reused from the CRM cache: no fine-tune ran
    error: str | None = None                      # safe to show the agent: no sample text
    traceback: str | None = None                  # for the run store only, never the agent

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
