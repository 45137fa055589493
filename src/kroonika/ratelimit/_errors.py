"""Errors of the rate limiter.

RateLimitError
├── RateLimitConfigError   a limit, name or network in the configuration is invalid
└── RateLimited            a request is over a limit (HTTP 429 with Retry-After)
"""

from __future__ import annotations


class RateLimitError(Exception):
    pass


class RateLimitConfigError(RateLimitError, ValueError):
    pass


class RateLimited(RateLimitError):
    """Over the limit ``limit`` (``<group>:<key kind>``); retry after ``retry_after`` s."""

    status_code = 429
    error = "rate_limited"

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"rate limit {limit} exceeded; retry after {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after
