"""Schemathesis hooks for Meterline's contract run (infra/contract.sh).

Authentication is fetched, not fixed: a fuzzed `POST /v1/auth/logout` or password change
revokes whatever session it was sent with, so a fixed token would turn every later request into
a 401 and hide the rest of the API. Logging in again every few seconds keeps the run exercising
authenticated paths. The API key for the metering routes comes from the environment.
"""

import os

import requests
import schemathesis

BASE = os.environ["CONTRACT_BASE_URL"]
EMAIL = os.environ["CONTRACT_EMAIL"]
PASSWORD = os.environ["CONTRACT_PASSWORD"]
API_KEY = os.environ["CONTRACT_API_KEY"]


@schemathesis.auth(refresh_interval=3)
class MeterlineAuth:
    def get(self, case, ctx):
        response = requests.post(
            f"{BASE}/v1/auth/login",
            json={"email": EMAIL, "password": PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
        case.headers["X-API-Key"] = API_KEY
