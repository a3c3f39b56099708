"""The README's Configuration table is the settings definition, rendered: a setting
added, renamed or redescribed without regenerating the table fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_worker.app.settings import describe_settings
from compute_worker.app.settings_doc import (
    BEGIN,
    END,
    documented_table,
    main,
    markdown_table,
    replace_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"
REGENERATE = "run `make settings-doc` (python -m compute_worker.app.settings_doc --write README.md)"


def _rows(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_the_readme_table_is_the_settings_definition() -> None:
    documented = documented_table(README.read_text())
    rows = _rows(documented)
    specs = {spec.name: spec for spec in describe_settings()}
    assert list(rows) == list(specs), f"settings added, removed or reordered: {REGENERATE}"
    for name, spec in specs.items():
        _option, env, flag, default, _values, meaning = rows[name]
        assert env == (f"`{spec.env}`" if spec.env else "— (Python only)"), (name, REGENERATE)
        assert (spec.flag is None) == (flag == "—"), (name, REGENERATE)
        if spec.flag:
            assert flag.startswith(f"`{spec.flag}`"), (name, REGENERATE)
        assert default.replace("\\", "").replace("`", "") == spec.default, (name, REGENERATE)
        assert meaning.replace("\\", "") == spec.description, (name, REGENERATE)
    assert documented == markdown_table(), REGENERATE


def test_replacing_the_table_rewrites_only_the_part_between_the_markers() -> None:
    text = f"# Title\n\nbefore\n{BEGIN}\n| stale |\n{END}\nafter\n"
    updated = replace_table(text)
    assert updated.startswith("# Title\n\nbefore\n" + BEGIN + "\n")
    assert updated.endswith(END + "\nafter\n")
    assert documented_table(updated) == markdown_table()
    assert replace_table(updated) == updated
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers here")


def test_the_table_escapes_what_markdown_would_swallow() -> None:
    table = markdown_table()
    assert "trigger \\| resume" in table  # a bare | would split the cell
    assert "`<data_dir>/compute-worker.db`" in table  # <data_dir> would vanish as HTML
    assert "`--require-https` / `--no-require-https`" in table


def test_the_module_writes_a_file_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "README.md"
    target.write_text(f"x\n{BEGIN}\nold\n{END}\n")
    assert main(["--write", str(target)]) == 0
    assert documented_table(target.read_text()) == markdown_table()
    assert main(["--write", str(target)]) == 0
    assert "is current" in capsys.readouterr().out
    assert main([]) == 0
    assert capsys.readouterr().out == markdown_table()
