"""A row's keys in ``--json``/``--jsonl`` (and the API, which shares the dicts) come in the
model's declared order in every process: ``model_dump()`` of a loaded row followed the order
SQLAlchemy set its attributes in, which changed with the process's hash seed, so two runs of
``mdm devices list --jsonl`` printed the same device with its keys shuffled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mdm_core.models import Device, MdmUser


def _mdm(folder: Path, seed: int, *args: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": str(seed), "MDM_DATABASE_URL": f"sqlite:///{folder / 'mdm.sqlite3'}"}
    done = subprocess.run([sys.executable, "-m", "mdm_core.cli", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_list_keys_come_in_the_models_order_whatever_the_hash_seed(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("id,email\nuser-1,one@example.org\n")
    (tmp_path / "devices.csv").write_text("serial_number,platform,udid,model,user\nC02XYZ,iOS,U-1,iPad,user-1\n")
    _mdm(tmp_path, 0, "db", "upgrade")
    _mdm(tmp_path, 0, "users", "import", "users.csv")
    _mdm(tmp_path, 0, "devices", "import", "devices.csv")
    for seed in range(3):  # the old order differed between these seeds
        device = json.loads(_mdm(tmp_path, seed, "devices", "list", "--jsonl"))
        user = json.loads(_mdm(tmp_path, seed, "users", "list", "--json"))[0]
        assert list(device) == list(Device.model_fields), (seed, list(device))
        assert list(user) == list(MdmUser.model_fields), (seed, list(user))
        assert (device["serial_number"], device["owner"], user["email"]) == ("C02XYZ", "user-1", "one@example.org")
