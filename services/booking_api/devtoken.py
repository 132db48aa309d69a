"""`booking dev-token --patient ID [--staff]`: a token signed with the embedded mode's dev key."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from booking_api.settings import ApiSettings
from booking_api.tokens import mint_token


def cli(args: argparse.Namespace) -> int:
    """Print a JWT for a patient (or staff with --staff); refuses unless the dev key is configured."""
    settings = ApiSettings()
    if not settings.dev_auth:
        sys.stderr.write(
            "refusing: the dev key works only with BOOKING_ENVIRONMENT=dev and no BOOKING_AUTH_ISSUER or "
            "BOOKING_AUTH_SHARED_SECRET; get real tokens from your identity provider\n"
        )
        return 2
    subject = args.patient or ("dev-staff" if args.staff else None)
    if not subject:
        sys.stderr.write("--patient ID is required (or --staff)\n")
        return 2
    token = mint_token(
        settings=settings,
        subject=subject,
        role="staff" if args.staff else "patient",
        now=datetime.now(UTC),
        ttl=timedelta(minutes=args.ttl_minutes),
    )
    sys.stdout.write(token + "\n")
    return 0
