"""What the pipeline needs from the app: the database, the cursor codec, the live settings,
injected faults and the ranking breaker (built once per app by service/app.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

from storage.db import Database

from service.core.settings import Settings
from service.resilience.breakers import CircuitBreaker
from service.resilience.faults import Faults

from .cursors import CursorCodec


@dataclass(frozen=True, kw_only=True)
class Deps:
    """What the pipeline needs. Its tunables are read from the settings at each use, so an
    SRE's change through the admin API applies to the next request."""
    db: Database
    cursors: CursorCodec
    settings: Settings
    faults: Faults = field(default_factory=Faults)
    ranking: CircuitBreaker = field(default_factory=lambda: CircuitBreaker("ranking"))

    @property
    def quote_timeout_s(self) -> float:
        return self.settings.quote_hydration_timeout_ms / 1000

    @property
    def head_limit(self) -> int:
        return self.settings.promoted_replies_per_parent

    @property
    def refill_rounds(self) -> int:
        return self.settings.visibility_refill_rounds

    @property
    def overfetch(self) -> int:
        return self.settings.visibility_overfetch

    @property
    def head_window(self) -> int:
        return self.settings.promotion_window
