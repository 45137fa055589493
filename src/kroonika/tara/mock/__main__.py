"""``python -m kroonika.tara.mock --clients clients.toml``: run the TARA mock."""

from __future__ import annotations

import argparse
import os
import sys

from kroonika.tara.mock._server import config_from_options, control_token_from_env, run
from kroonika.tara.mock.config import InvalidMockConfig


def main(argv: list[str] | None = None) -> int:
    """Parse options and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m kroonika.tara.mock", description=__doc__)
    parser.add_argument("--clients", required=True, help="clients file (.toml or .json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--issuer", help="default http://HOST:PORT, no trailing slash")
    parser.add_argument("--strict", action="store_true", help="plain OIDC, no TARA quirks")
    parser.add_argument("--control-api", action="store_true", help="serve /mock/* switches")
    parser.add_argument("--key-dir", help="keep the two signing keys in this directory")
    args = parser.parse_args(argv)
    try:
        config = config_from_options(
            clients_file=args.clients,
            host=args.host,
            port=args.port,
            issuer=args.issuer,
            strict=args.strict,
            control_api=args.control_api,
            control_token=control_token_from_env(os.environ),
            key_dir=args.key_dir,
        )
    except InvalidMockConfig as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(args.host, args.port, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
