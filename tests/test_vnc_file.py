"""import-vnc / export-vnc: validation first, one transaction, idempotent, backup, exact round trip, clear errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from _helpers import KindleCli
from psycopg import sql

from kindle_store._vnc_db import DbVncManager
from kindle_store.errors import InvalidVncFile, SchemaBehind
from kindle_store.jsonfile import backup_path
from kindle_store.migrate import migrate, rollback
from kindle_store.profiles import same_json
from kindle_store.settings import Settings
from kindle_store.store import Store
from kindle_store.vnc_file import export_document, export_file, import_file, parse_map
from kindle_store.vnc_manager import new_instance

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "vnc_instance_map.json"


def sample() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(SAMPLE.read_bytes())
    return doc


def write(tmp_path: Path, doc: Any, name: str = "vnc_instance_map.json") -> Path:
    path = tmp_path / name
    path.write_bytes(doc if isinstance(doc, bytes) else orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return path


def run_import(store: Store, path: Path, *, dry_run: bool = False, backup: bool = True) -> list[str]:
    """The import's stdout lines."""
    out = io.StringIO()
    assert 0 == import_file(store, path, dry_run=dry_run, backup=backup, out=out, err=io.StringIO())
    return out.getvalue().splitlines()


def rows(store: Store) -> list[tuple[Any, ...]]:
    """Every slot and meta row, timestamps included: equal only if nothing was written."""
    with store.connection() as conn:
        q = sql.SQL("SELECT * FROM {s}.vnc_instances ORDER BY id").format(s=sql.Identifier(store.schema))
        meta = sql.SQL("SELECT * FROM {s}.vnc_map_meta").format(s=sql.Identifier(store.schema))
        return [*conn.execute(q).fetchall(), *conn.execute(meta).fetchall()]


# -- import -----------------------------------------------------------------------------------------------------


def test_import_summary(store: Store, tmp_path: Path) -> None:
    lines = run_import(store, write(tmp_path, SAMPLE.read_bytes()))
    assert "imported 5 instances: 5 created, 0 updated, 0 unchanged" == lines[-1]


def test_import_writes_a_byte_exact_backup(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE.read_bytes())
    run_import(store, path)
    assert SAMPLE.read_bytes() == backup_path(path).read_bytes()


def test_backup_keeps_the_file_s_permissions(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE.read_bytes())
    path.chmod(0o600)
    run_import(store, path)
    assert 0o600 == backup_path(path).stat().st_mode & 0o777


def test_import_no_backup(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE.read_bytes())
    run_import(store, path, backup=False)
    assert not backup_path(path).exists()


def test_import_twice_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE.read_bytes())
    run_import(store, path)
    before = rows(store)
    lines = run_import(store, path)
    assert ("imported 5 instances: 0 created, 0 updated, 5 unchanged", before) == (lines[-1], rows(store))


def test_import_counts_an_update(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, SAMPLE.read_bytes()))
    doc = sample()
    doc["instances"][1]["assigned_profile"] = "dave@example.com"
    assert "imported 5 instances: 0 created, 1 updated, 4 unchanged" == run_import(store, write(tmp_path, doc))[-1]


def test_import_keeps_slots_the_file_lacks(store: Store, tmp_path: Path) -> None:
    DbVncManager(store).assign_instance_to_profile("x@x")  # slot 1
    doc = {"instances": [new_instance(2, "y@x")], "version": 1}
    lines = run_import(store, write(tmp_path, doc))
    assert (["not in the file: 1 instances kept that the file lacks (never deleted): ids 1",
             "imported 1 instances: 1 created, 0 updated, 0 unchanged"],
            [new_instance(1, "x@x"), new_instance(2, "y@x")]) == (lines[-2:], DbVncManager(store).get_all_instances())


def test_import_moves_emails_between_slots(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, {"instances": [new_instance(1, "a@x"), new_instance(2, "b@x")], "version": 1}))
    swapped = [new_instance(1, "b@x"), new_instance(2, "a@x")]
    run_import(store, write(tmp_path, {"instances": swapped, "version": 1}))
    assert swapped == DbVncManager(store).get_all_instances()


def test_import_swaps_ports_between_slots(store: Store, tmp_path: Path) -> None:
    one, two = new_instance(1), new_instance(2)
    run_import(store, write(tmp_path, {"instances": [one, two], "version": 1}))
    swapped = [{**one, "vnc_port": two["vnc_port"]}, {**two, "vnc_port": one["vnc_port"]}]
    run_import(store, write(tmp_path, {"instances": swapped, "version": 1}))
    assert swapped == DbVncManager(store).get_all_instances()


def test_dry_run_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE.read_bytes())
    lines = run_import(store, path, dry_run=True)
    assert ("dry run: imported 5 instances: 5 created, 0 updated, 0 unchanged", [], False) == (
        lines[-1], rows(store), backup_path(path).exists())


def test_imported_slots_are_what_the_manager_sees(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, SAMPLE.read_bytes()))
    assert same_json(sample()["instances"], DbVncManager(store).get_all_instances())


def test_manager_assigns_the_slot_freed_by_empty_string(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, SAMPLE.read_bytes()))
    DbVncManager(store).assign_instance_to_profile("dave@example.com")  # slot 2
    got = DbVncManager(store).assign_instance_to_profile("erin@example.com")
    assert {**sample()["instances"][3], "assigned_profile": "erin@example.com"} == got


# -- export and the round trip ------------------------------------------------------------------------------


def test_round_trip_is_exact(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, SAMPLE.read_bytes()))
    out = tmp_path / "exported.json"
    export_file(store, out, out=io.StringIO())
    assert same_json(sample(), orjson.loads(out.read_bytes()))


def test_export_to_stdout(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, SAMPLE.read_bytes()))
    out = io.StringIO()
    export_file(store, None, out=out)
    assert same_json(sample(), orjson.loads(out.getvalue()))


def test_export_of_an_empty_map(store: Store) -> None:
    assert {"instances": [], "version": 1} == export_document(store)


def test_export_after_the_manager_wrote(store: Store) -> None:
    DbVncManager(store).assign_instance_to_profile("a@x")
    assert {"instances": [new_instance(1, "a@x")], "version": 1} == export_document(store)


def test_export_writes_what_the_json_backend_writes(store: Store, tmp_path: Path) -> None:
    """Keys in the file's order, orjson's two-space indent: a file the JSON backend wrote comes back byte-exact."""
    written = orjson.dumps(sample(), option=orjson.OPT_INDENT_2)
    run_import(store, write(tmp_path, written))
    export_file(store, tmp_path / "out.json", out=io.StringIO())
    assert written == (tmp_path / "out.json").read_bytes()


# -- refusals: a clear message, the database and the files exactly as they were ----------------------------


def with_instances(*changes: dict[str, Any]) -> dict[str, Any]:
    """The sample with instance i updated by changes[i]."""
    doc = sample()
    for inst, change in zip(doc["instances"], changes, strict=False):
        inst.update(change)
    return doc


REFUSED = {
    "one-email-twice": (with_instances({}, {}, {"assigned_profile": "alice@example.COM"}),
                        r"vnc_instance_map\.json: instances 1 and 3 both assigned to Alice@Example\.com "
                        r"\(spelled 'alice@example\.COM' in 3\)$"),
    "duplicate-id": (with_instances({}, {}, {}, {"id": 2}),
                     r"vnc_instance_map\.json: instances\[1\] and instances\[3\] both have id 2$"),
    "duplicate-port": (with_instances({}, {"appium_port": 4728}),
                       r"vnc_instance_map\.json: instances 2 and 5 both use appium_port 4728$"),
    "duplicate-display": (with_instances({}, {}, {}, {}, {"display": 1}),
                          r"instances 1 and 5 both use display 1$"),
    "string-port": (with_instances({}, {}, {"vnc_port": "5903"}),
                    r"instances\[2\] \(id 3\): vnc_port must be a 32-bit integer or null, got string '5903'$"),
    "bool-id": (with_instances({"id": True}), r"instances\[0\]: id must be a 32-bit integer, got boolean"),
    "string-health-check": (with_instances({"appium_last_health_check": "2024-06-10"}),
                            r"\(id 1\): appium_last_health_check must be Unix seconds"),
    "instance-not-object": ({"instances": [1], "version": 1}, r"instances\[0\]: expected an object, got integer$"),
    "no-version": ({"instances": []}, r"the key 'version' is missing"),
    "string-version": ({"instances": [], "version": "1"}, r'"version" must be an integer, got string'),
    "instances-not-list": ({"instances": {}, "version": 1}, r'"instances" must be an array, got object$'),
    "not-an-object": ([], r"vnc_instance_map\.json: expected an object"),
    "nul-in-unknown-key": ({"instances": [], "version": 1, "x": ["a\x00"]},
                           r"vnc_instance_map\.json: x\[0\]: a NUL character cannot be stored$"),
    "big-int": (b'{"instances": [], "version": 1, "x": [-123456789012345678901]}',
                r"vnc_instance_map\.json: x\[0\]: the integer -123456789012345678901 at byte 38 \(line 1, column 39\) "
                r"does not fit in 64 bits$"),
    "invalid-json": (b'{"instances": [,]}', r"not valid JSON at byte 15 \(line 1, column 16\)"),
    "not-utf8": (b'{"instances": [], "version": 1, "x": "\xff"}',
                 r"not valid JSON at byte 38 \(line 1, column 39\): not valid UTF-8$"),
}


@pytest.mark.parametrize(("doc", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_import_refuses(store: Store, tmp_path: Path, doc: Any, message: str) -> None:
    run_import(store, write(tmp_path, SAMPLE.read_bytes(), "earlier.json"))
    before = rows(store)
    path = write(tmp_path, doc)
    with pytest.raises(InvalidVncFile, match=message):
        run_import(store, path)
    assert (before, False) == (rows(store), backup_path(path).exists())


def test_an_email_with_a_line_break_gives_a_one_line_error() -> None:
    raw = orjson.dumps({"instances": [new_instance(1, "a\nb@x"), new_instance(2, "A\nB@x")], "version": 1})
    with pytest.raises(InvalidVncFile) as refused:
        parse_map(raw, "m.json")
    assert "m.json: instances 1 and 2 both assigned to a\\x0ab@x (spelled 'A\\nB@x' in 2)" == str(refused.value)


def test_import_refuses_an_email_a_kept_slot_holds(store: Store, tmp_path: Path) -> None:
    vnc = DbVncManager(store)
    for e in ("a@x", "b@x", "c@x"):
        vnc.assign_instance_to_profile(e)
    before = rows(store)
    with pytest.raises(InvalidVncFile, match=r"instances 1 and 3 \(kept from the database\) both assigned to C@x"):
        run_import(store, write(tmp_path, {"instances": [new_instance(1, "C@x")], "version": 1}))
    assert before == rows(store)


def test_import_refuses_a_schema_that_is_behind(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, schema="vnc_behind")
    migrate(settings)
    rollback(settings)
    path = write(tmp_path, SAMPLE.read_bytes())
    with Store(settings) as behind, pytest.raises(SchemaBehind, match="vnc_behind"):
        run_import(behind, path)
    assert not backup_path(path).exists()


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_import_and_export(kindle_cli: KindleCli, tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE.read_bytes())
    exported = tmp_path / "exported.json"
    import_code, out, _ = kindle_cli("import-vnc", str(path))
    export_code = kindle_cli("export-vnc", "-o", str(exported))[0]
    assert ((0, 0), "imported 5 instances: 5 created, 0 updated, 0 unchanged", True) == (
        (import_code, export_code), out.splitlines()[-1], same_json(sample(), orjson.loads(exported.read_bytes())))


def test_cli_refusal_is_one_line_and_exit_1(kindle_cli: KindleCli, tmp_path: Path) -> None:
    path = write(tmp_path, {"instances": [new_instance(3, "a@x"), new_instance(7, "a@x")], "version": 1})
    code, _, err = kindle_cli("import-vnc", str(path))
    assert (1, [f"kindle-store: error: {path}: instances 3 and 7 both assigned to a@x"]) == (code, err.splitlines())
