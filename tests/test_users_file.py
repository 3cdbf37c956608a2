"""users.json import, export and verify against real PostgreSQL: the round-trip law, idempotency, bad input."""

from __future__ import annotations

import contextlib
import gc
import io
import re
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from _helpers import KindleCli, sorted_json
from psycopg import sql

from kindle_store import users_file
from kindle_store._avd_json import JsonProfileManager
from kindle_store._sqlfiles import Query
from kindle_store.errors import InvalidProfile, InvalidUsersFile, SchemaBehind
from kindle_store.profile import SECTIONS, Profile
from kindle_store.profiles import same_json
from kindle_store.queries import queries
from kindle_store.settings import Settings
from kindle_store.store import Store
from kindle_store.users_file import export_documents, export_file, import_file, verify_file

DATA = Path(__file__).parent / "data"
FULL = DATA / "users_full.json"
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "users.json"


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def exported(store: Store) -> dict[str, Any]:
    return dict(export_documents(store))


def run_import(store: Store, path: Path, *, dry_run: bool = False, backup: bool = False) -> list[str]:
    out = io.StringIO()
    assert 0 == import_file(store, path, dry_run=dry_run, backup=backup, out=out, err=io.StringIO())
    return out.getvalue().splitlines()


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def write(path: Path, docs: dict[str, Any]) -> Path:
    path.write_bytes(orjson.dumps(docs, option=orjson.OPT_INDENT_2))
    return path


def row_state(store: Store) -> list[tuple[Any, ...]]:
    """Every row's identity, version, updated_at and xmin: a row rewritten in any way shows here."""
    s = sql.Identifier(store.schema)
    with store.connection() as c:
        rows = c.execute(sql.SQL("SELECT email, version, updated_at, xmin::text FROM {}.users ORDER BY id")
                         .format(s)).fetchall()
        for table in [*SECTIONS, "user_preferences"]:
            rows += c.execute(sql.SQL("SELECT user_id, xmin::text FROM {}.{} ORDER BY 1, 2")
                              .format(s, sql.Identifier(table))).fetchall()
    return rows


# -- the round-trip law ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [FULL, SAMPLE], ids=["full", "sample"])
def test_export_of_import_equals_file(store: Store, path: Path) -> None:
    run_import(store, path)
    assert same_json(load(path), exported(store))


def test_full_fixture_covers_every_known_key() -> None:
    docs = load(FULL).values()
    keys = {k for d in docs for k in d} | {f"{s}.{k}" for d in docs for s in SECTIONS for k in (d.get(s) or {})}
    known = set(Profile.specs()) | {f"{n}.{k}" for n, c in SECTIONS.items() for k in c.specs()}
    assert set() == known - keys


def test_export_file_is_users_json(store: Store, tmp_path: Path) -> None:
    run_import(store, FULL)
    out = io.StringIO()
    assert 0 == export_file(store, tmp_path / "users.json", out=out)
    assert same_json(load(FULL), load(tmp_path / "users.json"))


def test_export_to_stdout_with_no_profiles(store: Store) -> None:
    out = io.StringIO()
    export_file(store, None, out=out)
    assert {} == orjson.loads(out.getvalue())


def test_export_keeps_file_order(store: Store) -> None:
    run_import(store, SAMPLE)
    assert list(load(SAMPLE)) == list(exported(store))


def generated(n: int, first: int = 0) -> dict[str, Any]:
    """n profiles made from the full fixture's, each under its own email."""
    templates = list(load(FULL).values())
    docs = {}
    for i in range(first, first + n):
        doc = orjson.loads(orjson.dumps(templates[i % len(templates)]))
        email = f"reader{i:05d}@example.com"
        if "email" in doc:
            doc["email"] = email
        if type(doc.get("last_used")) is int:
            doc["last_used"] += i
        docs[email] = doc
    return docs


def test_ten_thousand_profiles_round_trip_and_reimport_writes_nothing(store: Store, tmp_path: Path) -> None:
    docs = generated(10_000)
    path = write(tmp_path / "users.json", docs)
    run_import(store, path)
    export_file(store, tmp_path / "export.json", out=io.StringIO())
    before = row_state(store)
    summary = run_import(store, path)[-1]
    assert (True, "imported 10000 profiles: 0 created, 0 updated, 10000 unchanged", before) == (
        same_json(docs, load(tmp_path / "export.json")), summary, row_state(store))


def test_export_streams_so_memory_stays_flat_as_profiles_grow(store: Store, tmp_path: Path) -> None:
    """export-json holds one batch of profiles at a time: four times the profiles, about the same peak."""
    def export_peak() -> int:
        tracemalloc.start()
        try:
            export_file(store, tmp_path / "export.json", out=io.StringIO())
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    run_import(store, write(tmp_path / "users.json", generated(1_000)))
    small = export_peak()
    run_import(store, write(tmp_path / "users.json", generated(3_000, first=1_000)))
    large = export_peak()
    assert len(load(tmp_path / "export.json")) == 4_000
    assert large < 1.5 * small, (small, large)  # held all at once, 4x the profiles would take ~4x the memory


# -- idempotency, updates, what the file lacks -------------------------------------------------------------


def test_first_import_creates_every_profile(store: Store) -> None:
    assert "imported 6 profiles: 6 created, 0 updated, 0 unchanged" == run_import(store, FULL)[-1]


def test_second_import_changes_nothing(store: Store) -> None:
    run_import(store, FULL)
    before = row_state(store)
    assert "imported 6 profiles: 0 created, 0 updated, 6 unchanged" == run_import(store, FULL)[-1]
    assert before == row_state(store)


def test_newer_file_updates_exactly_the_profiles_that_differ(store: Store, tmp_path: Path) -> None:
    run_import(store, FULL)
    docs = load(FULL)
    docs["carol@example.org"]["last_used"] = 1720000000
    docs["dave@example.net"]["reading_settings"]["theme"] = "light"
    docs["frank@example.com"]["preferences"]["font"] = None
    lines = run_import(store, write(tmp_path / "users.json", docs))
    assert (["updated: carol@example.org", "updated: dave@example.net", "updated: frank@example.com"],
            "imported 6 profiles: 0 created, 3 updated, 3 unchanged") == (
        [x for x in lines if x.startswith("updated:")], lines[-1])


def test_one_file_creates_some_profiles_and_updates_others(store: Store, tmp_path: Path) -> None:
    docs = load(FULL)
    new = ("carol@example.org", "dave@example.net")
    run_import(store, write(tmp_path / "first.json", {e: d for e, d in docs.items() if e not in new}))
    docs["frank@example.com"]["preferences"]["font"] = "Bookerly"
    summary = run_import(store, write(tmp_path / "users.json", docs))[-1]
    with store.connection() as c:
        rows = c.execute(sql.SQL("SELECT email, id, version FROM {}").format(sql.Identifier(store.schema, "users")))
        ids, versions = {}, {}
        for email, user_id, version in rows:
            ids[email], versions[email] = user_id, version
    assert ("imported 6 profiles: 2 created, 1 updated, 3 unchanged", True) == (
        summary, same_json(docs, exported(store)))
    assert {**dict.fromkeys(docs, 1), "frank@example.com": 2} == versions
    assert min(ids[e] for e in new) > max(ids[e] for e in docs if e not in new)


def test_update_bumps_version_of_changed_profiles_only(store: Store, tmp_path: Path) -> None:
    run_import(store, FULL)
    docs = load(FULL)
    docs["Bob.Smith@Example.COM"]["emulator_settings"]["sleep_disabled"] = True
    run_import(store, write(tmp_path / "users.json", docs))
    versions = {email: version for email, version, *_ in row_state(store)[:6]}
    assert {**dict.fromkeys(docs, 1), "Bob.Smith@Example.COM": 2} == versions


@pytest.mark.parametrize("change", [
    pytest.param(lambda d: d["alice@example.com"].pop("emulator_settings"), id="section-removed"),
    pytest.param(lambda d: d["carol@example.org"].update(reading_settings={"theme": "x"}), id="section-added"),
    pytest.param(lambda d: d["alice@example.com"].update(preferences=None), id="preferences-null"),
    pytest.param(lambda d: d["Bob.Smith@Example.COM"].pop("preferences"), id="preferences-removed"),
    pytest.param(lambda d: d["alice@example.com"]["preferences"].update(an_int=42.0), id="int-to-float"),
    pytest.param(lambda d: d["dave@example.net"].update(auth_date="2024-03-10T08:00:00"), id="iso-respelled"),
    pytest.param(lambda d: d["frank@example.com"]["library_settings"].pop("view_type"), id="key-removed"),
    pytest.param(lambda d: d.update({"CAROL@example.org": d.pop("carol@example.org")}), id="email-respelled"),
])
def test_changed_file_round_trips(store: Store, tmp_path: Path, change: Any) -> None:
    run_import(store, FULL)
    docs = load(FULL)
    change(docs)
    summary = run_import(store, write(tmp_path / "users.json", docs))[-1]
    assert ("imported 6 profiles: 0 created, 1 updated, 5 unchanged", True) == (
        summary, same_json(docs, exported(store)))


def test_profiles_the_file_lacks_are_kept_and_counted(store: Store, tmp_path: Path) -> None:
    run_import(store, FULL)
    docs = load(FULL)
    lacking = {k: docs.pop(k) for k in ["carol@example.org", "dave@example.net"]}
    lines = run_import(store, write(tmp_path / "users.json", docs))
    assert "not in the file: 2 profiles kept that the file lacks (never deleted)" in lines
    assert same_json({**docs, **lacking}, exported(store))


def test_summary_counts_extra_keys(store: Store) -> None:
    assert "extra keys kept: 13 (keys outside the known fields, stored as written)" in run_import(store, FULL)


COPY_COLUMNS = {
    "copy_users": ("id", "email", *Profile.columns(), "has_preferences"),
    **{f"copy_{name}": ("user_id", *cls.columns()) for name, cls in SECTIONS.items()},
    "copy_preferences": ("user_id", "key", "value"),
}


@pytest.mark.parametrize("name", sorted(COPY_COLUMNS))
def test_each_copy_names_the_columns_in_the_order_the_import_sends_them(name: str) -> None:
    listed = re.search(r"\(([^)]*)\)\s*FROM STDIN", queries("import")[name].text)
    assert listed is not None
    assert COPY_COLUMNS[name] == tuple(c.strip() for c in listed[1].split(","))


def test_the_import_leaves_the_garbage_collector_as_it_found_it(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidUsersFile):
        run_import(store, write(tmp_path / "users.json", {"a@x": {"last_used": "yesterday"}}))
    on_after_a_refusal = gc.isenabled()
    gc.disable()
    try:
        run_import(store, SAMPLE)
        off_after_an_import = not gc.isenabled()
    finally:
        gc.enable()
    assert (True, True) == (on_after_a_refusal, off_after_an_import)


def test_statement_count_does_not_grow_with_the_file(store: Store, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    run = Query.run

    def counted(self: Query, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.name)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Query, "run", counted)
    counts = []
    for n in (3, 300):
        calls.clear()
        docs = {f"n{n}-{i}@x": load(FULL)["alice@example.com"] for i in range(n)}
        run_import(store, write(tmp_path / "users.json", docs))
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_failure_while_writing_leaves_the_database_as_it_was(store: Store, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom:
        name = "copy_preferences"

        def compose(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("injected failure after the other writes")

    run_import(store, SAMPLE)
    before = (sorted_json(exported(store)), row_state(store))
    monkeypatch.setitem(users_file.Q, "copy_preferences", Boom())
    with pytest.raises(RuntimeError, match="injected"):
        run_import(store, FULL)
    assert before == (sorted_json(exported(store)), row_state(store))


def test_more_than_twenty_updates_are_summarised(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "users.json", {f"u{i:02d}@x": {"last_used": i} for i in range(25)})
    run_import(store, path)
    lines = run_import(store, write(path, {f"u{i:02d}@x": {"last_used": i + 1} for i in range(25)}))
    updated = [x for x in lines if x.startswith("updated:")]
    assert (21, "updated: ... and 5 more") == (len(updated), updated[-1])


def test_dry_run_writes_nothing_and_reports(store: Store, tmp_path: Path) -> None:
    run_import(store, SAMPLE)
    before = row_state(store)
    path = Path(shutil.copy(FULL, tmp_path / "users.json"))
    lines = run_import(store, path, dry_run=True, backup=True)
    assert ("dry run: imported 6 profiles: 6 created, 0 updated, 0 unchanged", before, False) == (
        lines[-1], row_state(store), (tmp_path / "users.json.backup").exists())


def test_backup_is_byte_identical(store: Store, tmp_path: Path) -> None:
    path = Path(shutil.copy(FULL, tmp_path / "users.json"))
    run_import(store, path, backup=True)
    assert FULL.read_bytes() == (tmp_path / "users.json.backup").read_bytes()


def test_progress_shows_on_a_terminal_only(store: Store, tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    path = write(tmp_path / "users.json", {f"u{i}@x": {"avd_name": f"a{i}"} for i in range(2000)})
    tty, pipe = Tty(), io.StringIO()
    import_file(store, path, dry_run=True, backup=False, out=io.StringIO(), err=tty)
    import_file(store, path, dry_run=True, backup=False, out=io.StringIO(), err=pipe)
    assert (True, "") == ("\rvalidating 2000/2000 (100%)\n" in tty.getvalue(), pipe.getvalue())


def test_a_file_the_json_backend_wrote_imports_however_deep_its_values(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    users = JsonProfileManager(path)
    users.register_profile("a@x", "AVD_a")
    for section in (None, "preferences", "reading_settings"):
        for depth in range(130, 120, -1):  # the deepest value the JSON backend takes there
            with contextlib.suppress(InvalidProfile):
                users.set_user_field("a@x", f"deep_{section}", nested(depth), section=section)
                break
    run_import(store, path)
    assert same_json(load(path), exported(store))


# -- bad input: a one-line error, the database and the files untouched -------------------------------------

BAD = {
    "not_json": r"not valid JSON at byte 56 \(line 4, column 5\): unexpected character",
    "truncated": r"not valid JSON at byte 76 \(line 4, column 24\): unexpected end of data",
    "invalid_utf8": r"not valid JSON at byte 64 \(line 2, column 63\): not valid UTF-8",
    "top_level_array": r"the top level must be an object keyed by email, got array$",
    "profile_not_object": r"b@example\.com: a profile must be an object, got array",
    "emulator_settings_string": r"a@example\.com: emulator_settings: expected an object or null, got string",
    "last_used_word": r"a@example\.com: last_used: expected integer Unix seconds, got string 'yesterday'",
    "styles_updated_yes": r"a@example\.com: styles_updated: expected a boolean, got string 'yes'",
    "vnc_instance_float": r"a@example\.com: vnc_instance: expected an integer, got float",
    "two_spellings": r"'Alice@Example\.com' and 'alice@example\.com' spell one email",
    "nul_in_string": r"a@example\.com: avd_name: a NUL character cannot be stored",
    "nul_in_section_key": r"a@example\.com: device_identifiers.*ro\.serial\\x00no.*: a NUL character cannot be stored",
    "nul_in_preference": r"a@example\.com: preferences\.notes\[1\]: a NUL character cannot be stored",
    "long_email": r"a{60}\.\.\.: email: email longer than 1024 bytes",
    "integer_beyond_64_bits": r"a@example\.com: preferences\.counter: the integer 123456789012345678901234 at byte 75 "
                              r"\(line 2, column 74\) does not fit in 64 bits$",
    "timestamp_out_of_range": r"a@example\.com: auth_date: '0001-01-01T00:00:00\+05:00' is out of range",
    "nested_too_deep_from_the_profile": r"a@example\.com: custom: nested deeper than 128 levels$",
}


def test_every_bad_file_has_a_case() -> None:  # rel_*.json belong to tests/reliability
    assert sorted(BAD) == sorted(p.stem for p in (DATA / "bad").glob("*.json") if not p.stem.startswith("rel_"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_refused_with_one_line_and_nothing_changes(
        store: Store, kindle_cli: KindleCli, tmp_path: Path, name: str) -> None:
    run_import(store, SAMPLE)
    before = (sorted_json(exported(store)), row_state(store))
    path = Path(shutil.copy(DATA / "bad" / f"{name}.json", tmp_path / "users.json"))
    code, out, err = kindle_cli("import-json", str(path))
    assert (1, "", before, False) == (
        code, out, (sorted_json(exported(store)), row_state(store)), (tmp_path / "users.json.backup").exists())
    assert re.fullmatch(rf"kindle-store: error: {re.escape(str(path))}: {BAD[name]}.*\n", err)


def test_two_spellings_only_the_database_takes_for_one_are_refused(
        store: Store, kindle_cli: KindleCli, tmp_path: Path) -> None:
    # Python lowers 'İ' to 'i' and a combining dot, a collation with Unicode case rules (libc, ICU) to a plain 'i'
    with store.connection() as c:
        if not c.execute("SELECT lower('İ@x') = 'i@x'").fetchone()[0]:  # type: ignore[index]
            pytest.skip("the database's collation lowers ASCII only")
    run_import(store, SAMPLE)
    before = (sorted_json(exported(store)), row_state(store))
    path = write(tmp_path / "users.json", {"İ@x": {"avd_name": "a"}, "b@x": {}, "i@x": {"avd_name": "b"}})
    code, _, err = kindle_cli("import-json", str(path))
    assert (1, before, False) == (
        code, (sorted_json(exported(store)), row_state(store)), (tmp_path / "users.json.backup").exists())
    assert f"kindle-store: error: {path}: 'İ@x' and 'i@x' spell one email (emails are case-insensitive)\n" == err


def test_schema_behind_is_refused_before_any_backup(settings: Settings, tmp_path: Path) -> None:
    path = Path(shutil.copy(SAMPLE, tmp_path / "users.json"))
    behind = Settings(database_url=settings.database_url, schema="kindle_never_migrated")
    with Store(behind) as store, pytest.raises(SchemaBehind, match="run yoyo apply"):
        import_file(store, path, dry_run=False, backup=True, out=io.StringIO(), err=io.StringIO())
    assert not (tmp_path / "users.json.backup").exists()


# -- verify ----------------------------------------------------------------------------------------------


def test_verify_equal_exits_zero(store: Store) -> None:
    run_import(store, FULL)
    out = io.StringIO()
    assert (0, "verify: the file and the database are equal (6 profiles)\n") == (
        verify_file(store, FULL, out=out), out.getvalue())


def test_verify_lists_every_difference(store: Store, tmp_path: Path) -> None:
    run_import(store, FULL)
    docs = load(FULL)
    docs["alice@example.com"]["preferences"]["an_int"] = 42.0
    docs["alice@example.com"]["device_identifiers"].pop("android_id")
    del docs["carol@example.org"]
    docs["zed@example.com"] = {"avd_name": None}
    out = io.StringIO()
    assert 1 == verify_file(store, write(tmp_path / "users.json", docs), out=out)
    assert [
        'alice@example.com: device_identifiers.android_id: file=<absent> db="a1b2c3d4e5f60718"',
        "alice@example.com: preferences.an_int: file=42.0 db=42",
        'carol@example.org: (profile): file=<absent> db={"email":"carol@example.org",'
        '"avd_name":"KindleAVD_carol_example_org"}',
        'zed@example.com: (profile): file={"avd_name":null} db=<absent>',
        "verify: 4 differences (file: 6 profiles, database: 6)",
    ] == out.getvalue().splitlines()


# -- the command line --------------------------------------------------------------------------------------


def test_cli_import_then_export_then_verify(kindle_cli: KindleCli, tmp_path: Path) -> None:
    path = Path(shutil.copy(SAMPLE, tmp_path / "users.json"))
    code, out, _ = kindle_cli("import-json", str(path))
    assert (0, "imported 5 profiles: 5 created, 0 updated, 0 unchanged") == (code, out.splitlines()[-1])
    code, out, _ = kindle_cli("export-json")
    assert (0, True) == (code, same_json(load(SAMPLE), orjson.loads(out)))
    assert (0, 0) == (kindle_cli("verify", str(path))[0], kindle_cli("import-json", "--no-backup", str(path))[0])


def test_cli_missing_file_is_one_line(kindle_cli: KindleCli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert (1, f"kindle-store: error: {missing}: No such file or directory\n") == kindle_cli(
        "import-json", str(missing))[::2]


def test_cli_export_into_a_missing_directory_names_the_file_asked_for(kindle_cli: KindleCli, tmp_path: Path) -> None:
    target = tmp_path / "no_such_dir" / "users.json"
    assert (1, f"kindle-store: error: {target}: No such file or directory\n") == kindle_cli(
        "export-json", "-o", str(target))[::2]


# -- the SQL keeps up with the profile model ----------------------------------------------------------------


def test_the_update_of_changed_profiles_writes_every_users_column() -> None:
    text = queries("import")["update_users"].text
    missing = [c for c in ("email", "has_preferences", *Profile.columns()) if not re.search(rf"\bs\.{c}\b", text)]
    assert [] == missing


@pytest.mark.parametrize("sep", ["\n", "\r", "\x85", "\u2028", "\u2029"], ids=["LF", "CR", "NEL", "LS", "PS"])
def test_an_error_naming_a_line_break_stays_one_line(sep: str) -> None:
    from kindle_store.jsonfile import one_line

    assert 1 == len(one_line(f"bad{sep}email: key: wrong").splitlines())
