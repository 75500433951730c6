"""The APR calculator over HTTP and on the command line (Regulation Z Appendix J (c)(1)(i): $5,000 advanced
10 Jan 1978, 24 monthly payments of $230 from 10 Feb 1978 → 9.69 %)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from creditstack.app.main import create_app
from creditstack.app.platform import Platform
from creditstack.core.security import Role

BODY = {
    "currency": "USD",
    "advances": [{"date": "1978-01-10", "amount_minor": 500_000}],
    "payments": [
        {"date": f"{1978 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}-10", "amount_minor": 23_000} for m in range(2, 26)
    ],
}


def test_apr_over_http(platform: Platform) -> None:
    client = TestClient(create_app(platform))
    assert client.post("/v1/lending/apr", json=BODY).status_code == 401
    _, token = platform.keys.create(Role.CONSUMER, "cus_someone")
    client.headers["Authorization"] = f"Bearer {token}"
    answer = client.post("/v1/lending/apr", json=BODY)
    assert answer.status_code == 200 and answer.json()["apr"] == "9.69"
    bad = client.post("/v1/lending/apr", json={**BODY, "payments": [{"date": "1978-02-10", "amount_minor": 1.5}]})
    assert bad.status_code == 422 and bad.json()["code"].startswith("lending.")
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_apr_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_text(json.dumps(BODY))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "creditstack"), "lending", "apr", "--input", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["apr"] == "9.69"
