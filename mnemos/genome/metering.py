"""Metering fields shared by Model, Adapter and Policy: pricing, usage limits, response cache.

```yaml
spec:
  pricing: {input: 0.5, output: 1.5}            # currency units per 1k prompt / completion tokens
  limits: {rpm: 600, tpm: 100000}                # per model, all callers together
  cache: {ttl: 10m}                              # exact-match response cache (opt-in)
```

A Policy's ``spec.limits`` sets limits (and budgets) for principals, teams or models::

    limits:
      - teams: [research]
        rpm: 1200
        tpm: 200000
        budget: {amount: 50, window: 30d}
"""

from __future__ import annotations

from pydantic import Field

from mnemos._model import CoreModel, Duration

__all__ = ["Budget", "CacheSpec", "LimitRule", "Pricing", "UsageLimits"]

# Ceilings far above any real figure, so that the arithmetic on them stays finite: an rpm of 10**400
# made every request of its key a 500 (int too large for a float), a price of 1e308 an infinite spend.
MAX_RATE = 10**15  # requests or tokens per minute
MAX_TOKENS = 10**18  # tokens in a budget (and in one request's reservation)
MAX_PRICE = 1e12  # per 1k tokens


class Pricing(CoreModel):
    """Price per 1,000 tokens (any currency; MNEMOS reports spend in the same unit)."""

    input: float = Field(0.0, ge=0, le=MAX_PRICE, description="Price per 1k prompt tokens.")
    output: float = Field(0.0, ge=0, le=MAX_PRICE, description="Price per 1k completion tokens.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The price of one request's tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1000.0


class Budget(CoreModel):
    """A spend cap over a fixed window (windows start at multiples of ``window`` since the epoch)."""

    amount: float | None = Field(None, ge=0, description="Most spend per window (pricing's currency).")
    tokens: int | None = Field(None, ge=0, le=MAX_TOKENS, description="Most tokens (prompt + completion) per window.")
    window: Duration = Field(30 * 86400.0, gt=0, description="Window length, e.g. 1d, 30d.")


class UsageLimits(CoreModel):
    """Requests and tokens per minute, and a budget; unset fields do not limit."""

    rpm: int | None = Field(None, ge=1, le=MAX_RATE, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, le=MAX_RATE, description="Tokens (prompt + completion) per minute.")
    budget: Budget | None = Field(None, description="Spend cap per window.")


class LimitRule(UsageLimits):
    """A Policy's limits for the principals, teams or models it names (empty lists: everyone)."""

    principals: list[str] = Field(default_factory=list, description="Principal names (API key names, subjects).")
    teams: list[str] = Field(default_factory=list, description="Teams (the `team` of API keys).")
    models: list[str] = Field(default_factory=list, description="Models the rule applies to.")


class CacheSpec(CoreModel):
    """Exact-match response cache: identical requests within ``ttl`` are answered from memory."""

    ttl: Duration = Field(600.0, gt=0, description="How long an answer is served from the cache.")
    sampled: bool = Field(False, description="Also cache generations that sample: temperature > 0 or unset "
                                             "(the model's default, 1). Without it only temperature 0 is cached.")
    max_entries: int = Field(1024, ge=1, description="Answers kept per gateway replica.")
