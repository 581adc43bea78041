"""tools/compare_glued.py: the glued values of two builds' executed notebooks, compared."""

from __future__ import annotations

import nbformat

from compare_glued import RECORD, glued, main


def notebook_with(path, values):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={RECORD: repr(value)},
                                           metadata={"scrapbook": {"name": name, "mime_prefix": "x"}})
                    for name, value in values.items()]
    notebook.cells = [cell]
    nbformat.write(notebook, path)


def test_differences_are_listed_and_change_the_exit_status(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    notebook_with(tmp_path / "old" / "page.ipynb", {"p": "1.09 [0.88, 1.26]", "verdict": "flat"})
    notebook_with(tmp_path / "new" / "page.ipynb", {"p": "1.09 [0.90, 1.26]", "verdict": "flat"})
    assert glued(tmp_path / "old" / "page.ipynb") == {"p": "1.09 [0.88, 1.26]", "verdict": "flat"}
    assert main([str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    printed = capsys.readouterr().out
    assert "page::p: '1.09 [0.88, 1.26]' -> '1.09 [0.90, 1.26]'" in printed
    assert "page: 1 of 2 glued values unchanged" in printed
    assert main([str(tmp_path / "old"), str(tmp_path / "old")]) == 0
