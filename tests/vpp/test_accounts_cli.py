"""`mdm vpp account add|list|set|remove` through the real CLI, against the simulator."""

from __future__ import annotations

import base64
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from plugins.vpp.models import VppAccount
from plugins.vpp.simulator import Simulator

from .conftest import FAST_CONFIG, account_row, inner_token


def _accounts(host: Any) -> int:
    with host.db.session() as session:
        return session.execute(select(func.count()).select_from(VppAccount)).scalar_one()


@pytest.fixture
def plain_host(make_host: Any) -> Any:
    host = make_host(config=FAST_CONFIG)
    host.db  # created now, so that the commands of the test print only their own output
    return host


def test_add_list_set_remove(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url, "--interval", "900")
    assert code == 0, err
    assert "added account school" in out and "Springfield Schools" in out and "900s" in out
    # claimed: Apple's client config carries our mdmInfo
    row = account_row(plain_host)
    assert simulator.state.mdm_info["id"] == row.mdm_info_id
    assert simulator.state.mdm_info["name"] == "mdm-host"

    code, out, err = cli("vpp", "account", "list", "--json")
    assert code == 0, err
    [acc] = json.loads(out)
    assert acc["name"] == "school" and acc["locationName"] == simulator.state.location_name
    assert acc["orgName"] == "Springfield Schools" and acc["uId"] == simulator.state.uid
    assert acc["tokenExpirationDate"][:10] == simulator.token_expiration_date[:10]
    assert acc["token_state"] == "valid" and acc["interval_seconds"] == 900
    assert acc["last_sync_at"] is None and acc["last_sync_result"] is None
    assert simulator.token not in out and inner_token(simulator) not in out

    assert cli("vpp", "sync", "school")[0] == 0
    code, out, _ = cli("vpp", "account", "list")
    assert code == 0
    header, line = out.splitlines()[:2]
    for column in ("name", "locationName", "orgName", "tokenExpirationDate", "token_status", "interval_seconds", "last_sync_at", "last_sync_result"):
        assert column in header
    assert "school" in line and "ok (full)" in line and simulator.token_expiration_date[:10] in line and "900" in line
    assert simulator.token not in out and inner_token(simulator) not in out

    code, out, err = cli("vpp", "account", "set", "school", "--interval", "120")
    assert code == 0, err
    assert account_row(plain_host).interval_seconds == 120
    code, out, err = cli("vpp", "account", "set", "school", "--interval", "5")
    assert code == 2 and "at least 60" in err and len(err.strip().splitlines()) == 1
    assert account_row(plain_host).interval_seconds == 120

    code, out, err = cli("vpp", "account", "remove", "school", "--yes")
    assert code == 0 and "removed account school" in out
    assert _accounts(plain_host) == 0
    assert cli("vpp", "assets", "--json")[1].strip() == "[]"


def test_malformed_token_refused(plain_host: Any, cli: Any, simulator: Any, project_dir: Path) -> None:
    bad = project_dir / "bad.vpptoken"
    bad.write_text("this is not a token")
    code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(bad), "--service-url", simulator.base_url)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "bad.vpptoken" in err
    assert _accounts(plain_host) == 0
    assert simulator.state.mdm_info is None


def test_expired_token_refused(plain_host: Any, cli: Any, project_dir: Path) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    with Simulator(seed=3, assets=2, devices=2, users=2, async_delay=0, token_expires_at=past) as old:
        path = old.write_token(project_dir / "old.vpptoken")
        code, out, err = cli("vpp", "account", "add", "old", "--token-file", str(path), "--service-url", old.base_url)
        assert code == 2
        assert "expired" in err and len(err.strip().splitlines()) == 1
        assert old.token not in err
        assert old.state.mdm_info is None
    assert _accounts(plain_host) == 0


def test_same_location_twice_refused(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    code, out, err = cli("vpp", "account", "add", "again", "--token-file", str(token_file), "--service-url", simulator.base_url)
    assert code == 2 and "already account 'school'" in err
    assert _accounts(plain_host) == 1


def test_location_of_other_mdm_refused_then_taken_over(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)
    assert code != 0
    assert "RivalMDM" in err and "--take-over" in err and len(err.strip().splitlines()) == 1
    assert _accounts(plain_host) == 0
    assert simulator.state.mdm_info["name"] == "RivalMDM"

    code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url, "--take-over")
    assert code == 0, err
    assert simulator.state.mdm_info["id"] == account_row(plain_host).mdm_info_id
    assert cli("vpp", "sync", "school")[0] == 0


def test_a_location_another_mdm_claimed_names_the_account_in_the_command_that_takes_it_back(
    plain_host: Any, cli: Any, simulator: Any, token_file: Path
) -> None:
    """`mdm vpp sync sim` and the last-sync column of `mdm vpp account list` advised
    `mdm vpp account set NAME --token-file FILE --take-over`, NAME left for the admin to guess:
    the account is named (FILE stays: the token the admin downloads); the command works as said."""
    assert cli("vpp", "account", "add", "sim", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    advice = "then take the location back with `mdm vpp account set sim --token-file FILE --take-over`"
    code, out, err = cli("vpp", "sync", "sim")
    assert code == 1 and out == "" and err.startswith("sim: error:") and err.rstrip().endswith(advice), (out, err)
    code, out, _ = cli("vpp", "account", "list", "--json")
    [account] = json.loads(out)
    assert code == 0 and account["last_sync_result"].endswith(advice), account
    assert "NAME" not in cli("vpp", "account", "list")[1]
    code, out, err = cli("vpp", "account", "set", "sim", "--token-file", str(token_file), "--take-over")  # as advised
    assert code == 0, err
    assert cli("vpp", "sync", "sim")[0] == 0


def test_take_over_without_a_token_file_says_what_it_goes_with(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    before = account_row(plain_host)
    for extra in ([], ["--interval", "3600"]):  # was: "nothing to change", or the interval set and --take-over dropped
        code, out, err = cli("vpp", "account", "set", "school", "--take-over", *extra)
        assert code == 2 and "--take-over goes with --token-file FILE" in err and "mdm vpp account add" in err, err
        assert len(err.strip().splitlines()) == 1 and out == ""
    assert account_row(plain_host).interval_seconds == before.interval_seconds


def test_renewal_must_be_same_location(plain_host: Any, cli: Any, simulator: Any, token_file: Path, project_dir: Path) -> None:
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    before = account_row(plain_host)
    with Simulator(seed=99, assets=2, devices=2, users=2, async_delay=0) as other:
        path = other.write_token(project_dir / "other.vpptoken")
        code, out, err = cli("vpp", "account", "set", "school", "--token-file", str(path))
        assert code != 0 and len(err.strip().splitlines()) == 1
        assert f"token file {path}" in err  # named as `account add` and a bad file name it
        assert other.token not in err
    after = account_row(plain_host)
    assert after.token_ciphertext == before.token_ciphertext and after.token_fingerprint == before.token_fingerprint
    # the same location's token is accepted
    code, out, err = cli("vpp", "account", "set", "school", "--token-file", str(token_file))
    assert code == 0, err and "updated account school" in out


def test_unknown_account(plain_host: Any, cli: Any) -> None:
    code, out, err = cli("vpp", "account", "set", "nope", "--interval", "600")
    assert code != 0 and "no VPP account named 'nope'" in err
    code, out, err = cli("vpp", "sync", "nope")
    assert code != 0 and "no VPP account named 'nope'" in err


@pytest.mark.parametrize("interval", ["0", "-5", "59"])
def test_an_interval_under_the_minimum_names_the_minimum(plain_host: Any, cli: Any, simulator: Any, token_file: Path, interval: str) -> None:
    """`--interval 0` or `-5` said 'must be a whole number from 1 to 31536000', though 1 is
    refused too: the one range given is the real one ([vpp] min_interval), nothing is added."""
    add = ("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)
    code, out, err = cli(*add, "--interval", interval)
    assert (code, out) == (2, "")
    assert err == f"mdm: error: --interval {interval} is too short: the Account Synchronization Interval is at least 60 seconds ([vpp] min_interval)\n"
    assert _accounts(plain_host) == 0
    assert cli(*add)[0] == 0
    code, out, err = cli("vpp", "account", "set", "school", "--interval", interval)
    assert (code, out) == (2, "") and "is at least 60 seconds ([vpp] min_interval)" in err
    code, out, err = cli("vpp", "account", "set", "school", "--interval", "1h")
    assert (code, out) == (2, "") and err.startswith("mdm vpp account set: error: argument --interval: '1h' is not a whole number of seconds")


def test_runs_of_a_misspelt_account_name_it(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    """`mdm vpp runs NAME` with a name no account has says so (exit 1), as the other commands
    and `GET /api/v1/vpp/runs?account=` do, instead of 'no sync runs'."""
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    for fmt in ([], ["--json"], ["--jsonl"]):
        code, out, err = cli("vpp", "runs", "schol", *fmt)
        assert (code, out) == (2, "") and err.strip() == "mdm: error: no VPP account named 'schol' (known accounts: school)"
    code, out, err = cli("vpp", "runs", "school")
    assert code == 0 and out.strip() == "no sync runs"


def test_sync_report_and_runs(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    code, out, err = cli("vpp", "sync")
    assert code == 0, err
    assert out.startswith("school: full sync ok") and "licenses +" in out
    code, out, err = cli("vpp", "sync", "school", "--json")
    assert code == 0
    [report] = json.loads(out)
    assert report["mode"] == "incremental" and report["status"] == "ok" and report["account"] == "school"
    code, out, err = cli("vpp", "sync", "school", "--full", "--json")
    assert json.loads(out)[0]["mode"] == "full"
    code, out, err = cli("vpp", "runs", "--json")
    runs = json.loads(out)
    assert [r["mode"] for r in runs] == ["full", "incremental", "full"]
    assert all(r["status"] == "ok" and r["trigger"] == "manual" for r in runs)
    code, out, err = cli("vpp", "runs", "school")
    assert code == 0 and "incremental" in out
    header, *lines = out.splitlines()  # which host ran each: `holder` in JSON, the process and host in the table
    assert header.split()[-3:] == ["holder", "pages", "error"]
    assert len(lines) == 3 and all(f" process {os.getpid()} on {socket.gethostname()} " in line for line in lines)

    # the mirror with Apple's field names
    assets = json.loads(cli("vpp", "assets", "--json")[1])
    assert {(a["adamId"], a["pricingParam"]) for a in assets} == set(simulator.snapshot()["assets"])
    licenses = json.loads(cli("vpp", "licenses", "--json")[1])
    assert len(licenses) == len(simulator.snapshot()["assignments"])
    users = json.loads(cli("vpp", "users", "--json")[1])
    assert {u["clientUserId"] for u in users} == set(simulator.snapshot()["users"])
    registered = [u for u in users if u["status"] == "Registered"]
    assert registered and all(u["inviteCode"] in (u["invitationUrl"] or "") for u in registered)


def test_sync_error_exit_code(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    simulator.faults.add("server_error", endpoint="assets", retry_after=0)
    code, out, err = cli("vpp", "sync")
    assert code == 1 and out == ""  # errors on stderr, results on stdout
    assert err.startswith("school: error:") and len(err.strip().splitlines()) == 1


def test_token_never_in_output_logs_or_database(
    plain_host: Any, cli: Any, simulator: Any, token_file: Path, project_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from plugins.vpp.sync.run import sync_account

    secrets = [simulator.token, inner_token(simulator), base64.b64decode(simulator.token).decode()]
    outputs = []
    outputs.append(cli("-vv", "vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url))
    for args in (
        ["vpp", "account", "list"],
        ["vpp", "account", "list", "--json"],
        ["-vv", "vpp", "sync"],
        ["vpp", "runs", "--json"],
        ["vpp", "assets", "--json"],
        ["vpp", "users", "--json"],
        ["vpp", "licenses", "--json"],
    ):
        outputs.append(cli(*args))
    simulator.faults.add("server_error", endpoint="users", count=1, retry_after=0)
    simulator.expire_token()
    outputs.append(cli("-vv", "vpp", "sync", "--full"))
    simulator.restore_token()
    outputs.append(cli("vpp", "account", "set", "school", "--token-file", str(token_file)))
    with caplog.at_level(logging.DEBUG):
        sync_account(plain_host, "school", full=True)
        simulator.revoke_token()
        sync_account(plain_host, "school")
        simulator.restore_token()
    text = "\n".join(o + e for _, o, e in outputs) + caplog.text
    for secret in secrets:
        assert secret not in text
    for path in (project_dir / "var").iterdir():
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, path.name
    assert "Bearer" not in caplog.text


def test_hooks_and_remove_events(synced: Any, simulator: Any, recorder: Any) -> None:
    from mdm_core.errors import MdmError
    from plugins.vpp.accounts import remove_account

    [acc] = synced.pm.hook.mdm_vpp_accounts(host=synced)
    assert acc["name"] == "school" and acc["last_sync_result"] == "ok (full)"
    assert all(simulator.token not in str(v) for v in acc.values())
    with pytest.raises(MdmError, match="no VPP account named 'nope'"):
        synced.pm.hook.mdm_vpp_sync(host=synced, account="nope", full=False, trigger="manual", wait=0)
    [report] = synced.pm.hook.mdm_vpp_sync(host=synced, account="school", full=False, trigger="plugin", wait=0)
    assert report["status"] == "ok" and report["trigger"] == "plugin"
    recorder.clear()
    remove_account(synced, "school")
    removed = [a for p in recorder.named("vpp_assets_removed") for a in p["assets"]]
    assert {(a["adamId"], a["pricingParam"]) for a in removed} == set(simulator.snapshot()["assets"])
    assert (
        synced.pm.hook.mdm_vpp_licenses(
            host=synced, account=None, adam_id=None, serial_number=None, client_user_id=None, serial_numbers=None, client_user_ids=None
        )
        == []
    )


def test_mirror_listings_page_and_stream_in_every_format(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    """--limit/--offset page through the same order as the whole list; --jsonl gives the same
    objects one a line; the text table has a line per row."""
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    assert cli("vpp", "sync")[0] == 0
    for command in (["vpp", "licenses"], ["vpp", "assets"], ["vpp", "users"], ["vpp", "runs"]):
        whole = json.loads(cli(*command, "--json")[1])
        assert len(whole) >= 1
        code, out, _ = cli(*command, "--jsonl")
        assert code == 0 and [json.loads(line) for line in out.splitlines()] == whole
        code, out, _ = cli(*command, "--json", "--limit", "3", "--offset", "1")
        assert code == 0 and json.loads(out) == whole[1:4]
        code, out, _ = cli(*command, "--limit", "2")
        assert code == 0 and len(out.splitlines()) == 1 + min(2, len(whole))
    licenses = json.loads(cli("vpp", "licenses", "--json")[1])
    keys = [(r["adamId"], r["pricingParam"], "clientUserId" in r, r.get("serialNumber") or r.get("clientUserId")) for r in licenses]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == len(simulator.snapshot()["assignments"])
    code, out, err = cli("vpp", "licenses", "--json", "--jsonl")
    assert code == 2 and "not allowed with argument" in err
    code, out, err = cli("vpp", "licenses", "--account", "nope", "--json")
    assert code == 2 and out == "" and "no VPP account named 'nope'" in err


def test_mdm_name_reaches_apple_without_the_blanks_around_it(make_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    """``[vpp] mdm_name`` is checked without the blanks around it, and Apple gets that value
    (other admins saw "  Springfield MDM \\t" holding the location). A location this database
    claimed with the blanks, before, is still recognised as its own."""
    from plugins.vpp import installation

    host = make_host(config=FAST_CONFIG + 'mdm_name = "  Springfield MDM \\t"\n')
    metadata = installation.metadata(installation.installation_id(host))
    simulator.claim_by_other_mdm(id="earlier-claim", name="  Springfield MDM \t", metadata=metadata)
    code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)
    assert code == 0, err  # taken back without --take-over
    assert simulator.state.mdm_info == {"id": "earlier-claim", "name": "Springfield MDM", "metadata": metadata}


def test_a_service_url_with_a_credential_is_refused_without_showing_it(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    """--service-url http://user:password@host/... was stored, used, and printed by `set`,
    `account list --json` and every error naming the URL."""
    with_password = simulator.base_url.replace("http://", "http://proxyuser:S3CRETPW@")
    for url in (with_password, simulator.base_url + "?token=S3CRETPW", "ftp://vpp.example.org/mdm/v2", "vpp.itunes.apple.com/mdm/v2"):
        code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", url)
        assert code == 2 and err.count("\n") == 1 and "is not an http(s) URL of a host and a path (no user name, password, query or fragment)" in err, err
        assert "S3CRETPW" not in out + err and _accounts(plain_host) == 0
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    code, out, err = cli("vpp", "account", "set", "school", "--service-url", with_password)
    assert code == 2 and "http://***@127.0.0.1" in err and "S3CRETPW" not in out + err, err
    assert account_row(plain_host).service_url == simulator.base_url
    assert "S3CRETPW" not in cli("vpp", "account", "list", "--json")[1]


def test_a_page_past_the_end_says_so_not_the_lists_own_advice(plain_host: Any, cli: Any, simulator: Any, token_file: Path) -> None:
    """`mdm vpp assets --offset 100000` of a synced account said "no assets: run `mdm vpp sync`"
    (`mdm apps list`: "add a VPP account"): advice for a fault there was not. A page past the
    last row says so; an empty list without --offset keeps its own line; JSON stays []."""
    assert cli("vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", simulator.base_url)[0] == 0
    assert cli("vpp", "sync")[0] == 0
    total = len(json.loads(cli("vpp", "assets", "--json")[1]))
    for command in (["vpp", "assets"], ["vpp", "users"], ["vpp", "runs"], ["devices", "list"]):
        code, out, _ = cli(*command, "--offset", "100000")
        # it named 100,000 rows the list does not have
        assert (code, out) == (0, "nothing at --offset 100000: the list ends before it; give a smaller --offset, or none\n"), command
        assert cli(*command, "--json", "--offset", "100000")[1] == "[]\n"
    code, out, _ = cli("vpp", "assets", "--offset", str(total - 1))
    assert code == 0 and len(out.splitlines()) == 2  # the header and the last asset
    assert cli("devices", "list")[1] == "no devices enrolled\n"
