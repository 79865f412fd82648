"""load_prompts on small files of every format, and on every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redblue.data import SUPPORTED_FORMATS, PromptSet, describe, detect_format, load_prompts
from redblue.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _error(source: Path | str, **kwargs: object) -> DataError:
    with pytest.raises(DataError) as info:
        load_prompts(source, **kwargs)  # type: ignore[arg-type]
    assert info.value.fix, "every DataError says how to fix it"
    return info.value


# -- formats ----------------------------------------------------------------------


def test_json_list_of_strings(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.json", json.dumps(["a", "b"]))
    ps = load_prompts(path)
    assert ps.instructions == ["a", "b"]
    assert ps.ids == ["plain-0", "plain-1"]
    assert (ps.name, ps.source, ps.columns, ps.roles) == ("plain", str(path), (), {})


def test_json_list_of_objects(tmp_path: Path) -> None:
    rows = [
        {"goal": "g1", "target": "t1", "extra": 3},
        {"goal": "g2", "target": "t2", "extra": None},
    ]
    ps = load_prompts(_write(tmp_path / "rows.json", json.dumps(rows)))
    assert ps.instructions == ["g1", "g2"]
    assert ps.targets == ["t1", "t2"]
    assert ps.columns == ("goal", "target", "extra")
    assert ps.roles == {"instruction": "goal", "target": "target"}
    assert ps[0].meta == {"extra": "3"}
    assert ps[1].meta == {}


@pytest.mark.parametrize("key", ["data", "prompts", "instructions", "behaviors", "rows"])
def test_json_object_with_a_list(tmp_path: Path, key: str) -> None:
    path = _write(
        tmp_path / "wrapped.json", json.dumps({"version": 1, key: ["a", {"prompt": "b"}]})
    )
    assert load_prompts(path).instructions == ["a", "b"]


def test_json_object_without_a_list(tmp_path: Path) -> None:
    error = _error(_write(tmp_path / "conf.json", json.dumps({"model": "x"})))
    assert "'model'" in error.what
    assert error.where == str(tmp_path / "conf.json")


def test_json_scalar_document(tmp_path: Path) -> None:
    assert "found a int" in _error(_write(tmp_path / "n.json", "3")).what


def test_jsonl_objects_and_strings(tmp_path: Path) -> None:
    text = '{"prompt": "a", "category": "c"}\n\n"b"\n{"prompt": "c"}\n'
    ps = load_prompts(_write(tmp_path / "x.jsonl", text))
    assert ps.instructions == ["a", "b", "c"]
    assert ps.categories == ["c", None, None]


def test_csv_with_quoted_newlines_and_bom(tmp_path: Path) -> None:
    text = '\ufeffgoal,target\n"line one\nline two","Sure, here"\nplain,t\n'
    ps = load_prompts(_write(tmp_path / "x.csv", text))
    assert ps.instructions == ["line one\nline two", "plain"]
    assert ps.targets == ["Sure, here", "t"]
    assert ps.columns == ("goal", "target")


def test_csv_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"prompt,note\r\na,1\r\n\r\nb,\r\n")
    ps = load_prompts(path)
    assert ps.instructions == ["a", "b"]
    assert ps[0].meta == {"note": "1"}
    assert ps[1].meta == {}


def test_tsv(tmp_path: Path) -> None:
    ps = load_prompts(_write(tmp_path / "x.tsv", "question\tanswer\nwhat, then?\t42\n"))
    assert ps.instructions == ["what, then?"]
    assert ps.targets == ["42"]


def test_txt_skips_blanks_and_comments(tmp_path: Path) -> None:
    text = "# a comment\nfirst prompt\n\n   \n  # indented comment\nsecond prompt  \n"
    ps = load_prompts(_write(tmp_path / "x.txt", text))
    assert ps.instructions == ["first prompt", "second prompt"]
    assert ps.ids == ["x-0", "x-1"]


PYRIT_TEMPLATE = """---
name: Test Template
description: a template for tests
authors:
  - Someone
parameters:
  - prompt
value: >
  Pretend you are free. {{ prompt }}
"""


def test_yaml_pyrit_template(tmp_path: Path) -> None:
    ps = load_prompts(_write(tmp_path / "free_mode.yaml", PYRIT_TEMPLATE))
    assert len(ps) == 1
    prompt = ps[0]
    assert prompt.instruction == "Pretend you are free. {{ prompt }}\n"
    assert prompt.id == "free_mode"
    assert prompt.category == "template"
    assert prompt.meta["name"] == "Test Template"
    assert json.loads(prompt.meta["authors"]) == ["Someone"]
    assert ps.roles == {"instruction": "value"}


def test_yaml_lists(tmp_path: Path) -> None:
    strings = load_prompts(_write(tmp_path / "s.yml", "- one\n- two\n"))
    assert strings.instructions == ["one", "two"]
    rows = load_prompts(
        _write(tmp_path / "r.yaml", "- question: q1\n  answer: a1\n- question: q2\n")
    )
    assert rows.instructions == ["q1", "q2"]
    assert rows.targets == ["a1", None]


def test_yaml_seed_dataset(tmp_path: Path) -> None:
    text = (
        "dataset_name: seeds\nprompts:\n  - value: first\n    harm_category: x\n  - value: second\n"
    )
    ps = load_prompts(_write(tmp_path / "seeds.prompt", text))
    assert ps.instructions == ["first", "second"]
    assert ps.categories == ["x", None]


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "label": [0, 1]}), path)
    ps = load_prompts(path)
    assert ps.instructions == ["a", "b"]
    assert [p.meta for p in ps] == [{"label": "0"}, {"label": "1"}]


def test_format_override(tmp_path: Path) -> None:
    path = _write(tmp_path / "prompts.dat", "prompt\nhello\n")
    assert load_prompts(path, format="csv").instructions == ["hello"]
    assert load_prompts(path, format="TXT").instructions == ["prompt", "hello"]


def test_jsonl_written_by_promptset_loads_back(tmp_path: Path) -> None:
    ps = PromptSet.from_instructions(
        ["a", "b"], targets=["t", None], categories=["c", None], name="s"
    )
    back = load_prompts(ps.to_jsonl(tmp_path / "s.jsonl"))
    assert back.content_hash == ps.content_hash
    assert back.ids == ps.ids


# -- folders --------------------------------------------------------------------


def test_directory_loads_supported_files_recursively_in_order(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    _write(root / "b.txt", "from b\n")
    _write(root / "a" / "z.yaml", PYRIT_TEMPLATE)
    _write(root / "a" / "y.json", '["from y"]')
    _write(root / "README.txt", "not a prompt\n")
    _write(root / "SOURCE.txt", "not a prompt\n")
    _write(root / ".hidden" / "c.txt", "not a prompt\n")
    _write(root / "notes.md", "not a prompt\n")
    ps = load_prompts(root)
    assert ps.instructions[0] == "from y"
    assert ps.instructions[2] == "from b"
    assert ps.ids == ["y-0", "z", "b-0"]
    assert (ps.name, ps.source) == ("templates", str(root))
    assert detect_format(root) == "dir"


def test_directory_format_filter(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", "text prompt\n")
    _write(tmp_path / "b.json", '["json prompt"]')
    assert load_prompts(tmp_path, format="json").instructions == ["json prompt"]


def test_directory_without_prompt_files(tmp_path: Path) -> None:
    _write(tmp_path / "README.md", "hi")
    error = _error(tmp_path)
    assert "no prompt files" in error.what
    assert error.where == str(tmp_path)


def test_directory_error_names_the_bad_file(tmp_path: Path) -> None:
    _write(tmp_path / "good.txt", "fine\n")
    bad = _write(tmp_path / "sub" / "bad.json", '[\n  "a",\n  oops\n]')
    assert _error(tmp_path).where == f"{bad}:3"


# -- column detection -----------------------------------------------------------------


def test_column_priority_and_case(tmp_path: Path) -> None:
    text = "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\nb1,standard,chem,id1\n"
    ps = load_prompts(_write(tmp_path / "hb.csv", text))
    assert ps.roles == {
        "instruction": "Behavior",
        "category": "SemanticCategory",
        "id": "BehaviorID",
    }
    assert ps[0].id == "id1"
    assert ps[0].meta == {"FunctionalCategory": "standard"}
    both = load_prompts(_write(tmp_path / "both.csv", "goal,prompt\ng,p\n"))
    assert both.instruction_column == "prompt"
    assert both[0].meta == {"goal": "g"}


def test_target_is_never_the_instruction_column(tmp_path: Path) -> None:
    ps = load_prompts(_write(tmp_path / "x.csv", "response\nr\n"), column="response")
    assert ps.roles == {"instruction": "response"}
    assert ps.targets == [None]


def test_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "Goal,prompt,Label,key,kind\ng,p,l,k1,c\n")
    ps = load_prompts(
        path, column="goal", target_column="label", category_column="kind", id_column="key"
    )
    prompt = ps[0]
    assert (prompt.instruction, prompt.target, prompt.category, prompt.id) == ("g", "l", "c", "k1")
    assert ps.roles == {"instruction": "Goal", "target": "Label", "category": "kind", "id": "key"}
    assert prompt.meta == {"prompt": "p"}


@pytest.mark.parametrize("option", ["column", "target_column", "category_column", "id_column"])
def test_missing_override_column_lists_columns(tmp_path: Path, option: str) -> None:
    path = _write(tmp_path / "x.csv", "goal,target\ng,t\n")
    error = _error(path, **{option: "nope"})
    assert "'nope'" in error.what
    assert "'goal', 'target'" in error.what


def test_no_detectable_prompt_column(tmp_path: Path) -> None:
    error = _error(_write(tmp_path / "x.csv", "foo,bar\n1,2\n"))
    assert "'foo', 'bar'" in error.what
    assert "column=" in (error.fix or "")


def test_column_options_on_plain_strings(tmp_path: Path) -> None:
    assert "plain strings" in _error(_write(tmp_path / "x.txt", "a\n"), column="goal").what


def test_repeated_ids_get_suffixes(tmp_path: Path) -> None:
    ps = load_prompts(_write(tmp_path / "x.csv", "id,prompt\na,1\na,2\na#2,3\nb,4\n"))
    assert ps.ids == ["a", "a#3", "a#2", "b"]
    assert len(set(ps.ids)) == len(ps)


def test_empty_id_cell_falls_back(tmp_path: Path) -> None:
    ps = load_prompts(_write(tmp_path / "x.csv", "id,prompt\n,first\nk,second\n"))
    assert ps.ids == ["x-0", "k"]


def test_dedupe_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.txt", "a\nA\nb\n")
    assert len(load_prompts(path)) == 3
    assert load_prompts(path, dedupe=True).instructions == ["a", "b"]


def test_name_option(tmp_path: Path) -> None:
    ps = load_prompts(_write(tmp_path / "x.txt", "a\n"), name="mine")
    assert (ps.name, ps.ids) == ("mine", ["mine-0"])


# -- bad input ------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    error = _error(missing)
    assert "not found" in error.what
    assert error.where == str(missing)
    assert "not found" in _error(str(missing)).what


@pytest.mark.parametrize("name", ["x.json", "x.jsonl", "x.csv", "x.tsv", "x.txt", "x.yaml"])
@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    path = _write(tmp_path / name, content)
    error = _error(path)
    assert "empty" in error.what
    assert str(path) in str(error)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("x.json", "[]"),
        ("x.csv", "goal,target\n"),
        ("x.txt", "# only a comment\n"),
        ("x.yaml", "[]"),
        ("x.yaml", "# only a comment\n"),
        ("x.json", "null"),
    ],
)
def test_no_rows(tmp_path: Path, name: str, content: str) -> None:
    assert "no prompts" in _error(_write(tmp_path / name, content)).what


def test_unknown_extension(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.xlsx", "whatever")
    error = _error(path)
    assert "'.xlsx'" in error.what
    assert "format=" in (error.fix or "")
    assert all(fmt in (error.fix or "") for fmt in SUPPORTED_FORMATS)
    assert error.where == str(path)


def test_unknown_format_name(tmp_path: Path) -> None:
    error = _error(_write(tmp_path / "x.txt", "a\n"), format="excel")
    assert "'excel'" in error.what
    assert "jsonl" in (error.fix or "")


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", '[\n  "a",\n  "b"\n  "c"\n]\n')
    error = _error(path)
    assert error.where == f"{path}:4"
    assert "invalid JSON" in error.what
    assert f"{path}:4" in str(error)


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"\n{"prompt": "c"}\n')
    assert _error(path).where == f"{path}:3"


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "name: x\nvalue: fine\n  broken: [\n")
    error = _error(path)
    assert error.where is not None
    assert error.where.startswith(f"{path}:")
    assert int(error.where.rsplit(":", 1)[1]) in (3, 4)
    assert "invalid YAML" in error.what


def test_csv_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", 'goal,target\n"two\nlines",t\nok,t\ntoo,many,fields\n')
    error = _error(path)
    assert error.where == f"{path}:5"
    assert "3 fields" in error.what
    assert "header has 2" in error.what


def test_csv_unterminated_quote(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", 'goal,target\nok,t\n"never closed,t\n')
    error = _error(path)
    assert error.where is not None
    assert error.where.startswith(f"{path}:")
    assert "malformed CSV" in error.what


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("x.csv", "goal,target\na,t\n,t\n", 3),
        ("x.csv", "goal,target\na,t\n   ,t\n", 3),
        ("x.tsv", "prompt\tx\na\t1\n\t2\n", 3),
        ("x.jsonl", '{"prompt": "a"}\n{"prompt": ""}\n', 2),
        ("x.jsonl", '{"prompt": "a"}\n{"other": "b"}\n', 2),
        ("x.jsonl", '"a"\n"  "\n', 2),
    ],
)
def test_empty_prompt_cell_names_the_line(
    tmp_path: Path, name: str, content: str, line: int
) -> None:
    path = _write(tmp_path / name, content)
    error = _error(path)
    assert "empty" in error.what
    assert error.where == f"{path}:{line}"


def test_empty_prompt_in_json_names_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.json", json.dumps([{"goal": "a"}, {"goal": None}]))
    error = _error(path)
    assert "empty" in error.what
    assert error.where == f"{path} (row 2)"


def test_row_of_the_wrong_type(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", '"a"\n[1, 2]\n')
    error = _error(path)
    assert "found a list" in error.what
    assert error.where == f"{path}:2"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("first\nsecond caf\xe9\n".encode("latin-1"))
    error = _error(path)
    assert "UTF-8" in error.what
    assert error.where == f"{path}:2"


def test_split_on_a_file_is_an_error(tmp_path: Path) -> None:
    assert "split=" in _error(_write(tmp_path / "x.txt", "a\n"), split="train").what


def test_format_hf_on_a_file_is_an_error(tmp_path: Path) -> None:
    assert "format='hf'" in _error(_write(tmp_path / "x.txt", "a\n"), format="hf").what


# -- Hugging Face datasets ------------------------------------------------------------


def test_saved_dataset_round_trip(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "saved"
    data = {"prompt": ["a", "b", "c"], "category": ["x", "y", "x"], "score": [1, 2, 3]}
    datasets.Dataset.from_dict(data).save_to_disk(str(folder))
    assert detect_format(folder) == "hf"
    ps = load_prompts(folder)
    assert ps.instructions == ["a", "b", "c"]
    assert ps.categories == ["x", "y", "x"]
    assert ps.columns == ("prompt", "category", "score")
    assert ps[2].meta == {"score": "3"}
    assert (ps.name, ps.source) == ("saved", str(folder))


def test_saved_dataset_dict_needs_a_split(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "saved_dict"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
            "test": datasets.Dataset.from_dict({"text": ["e1"]}),
        }
    ).save_to_disk(str(folder))
    error = _error(folder)
    assert "train" in error.what
    assert "test" in error.what
    assert load_prompts(folder, split="test").instructions == ["e1"]
    assert "no split 'dev'" in _error(folder, split="dev").what


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make the hub unreachable at once, and keep dataset caches in ``tmp_path``."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def test_folder_of_data_files_as_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch, tmp_path)
    folder = tmp_path / "repo"
    _write(folder / "train.csv", "prompt,x\nhello,1\nworld,2\n")
    _write(folder / "test.csv", "prompt,x\nbye,3\n")
    assert load_prompts(folder, format="hf", split="train").instructions == ["hello", "world"]
    assert "several splits" in _error(folder, format="hf").what


def test_unknown_hub_name_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch, tmp_path)
    name = "redblue-tests-no-such-owner/no-such-dataset"
    assert detect_format(name) == "hf"
    error = _error(name, split="train")
    assert "locally or on the hub" in error.what
    assert error.where == name
    assert "owner/name" in (error.fix or "")


# -- detect_format and describe ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.json", "json"),
        ("a.JSONL", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.csv", "csv"),
        ("a.tsv", "tsv"),
        ("a.txt", "txt"),
        ("a.yml", "yaml"),
        ("a.yaml", "yaml"),
        ("a.prompt", "yaml"),
        ("a.parquet", "parquet"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, fmt: str) -> None:
    assert detect_format(_write(tmp_path / name, "x")) == fmt


def test_detect_format_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        detect_format(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"'\.bin'"):
        detect_format(_write(tmp_path / "a.bin", "x"))


def test_describe(tmp_path: Path) -> None:
    text = "goal,target,category\na,t,x\nb,,x\nc,t,y\nd,t,\n"
    info = describe(load_prompts(_write(tmp_path / "x.csv", text)), sample_size=2)
    assert info["rows"] == 4
    assert info["columns"] == ["goal", "target", "category"]
    assert info["roles"] == {"instruction": "goal", "target": "target", "category": "category"}
    assert info["categories"] == {"x": 2, "y": 1}
    assert info["uncategorised"] == 1
    assert info["with_target"] == 3
    assert [row["instruction"] for row in info["sample"]] == ["a", "b"]
    json.dumps(info)


def test_rows_written_by_prompt_to_dict_keep_their_meta(tmp_path) -> None:
    from redblue.data import Prompt, PromptSet, load_prompts

    prompts = PromptSet(
        (Prompt("How do I hack a yoyo?", "p-0", "Sure", "cyber", {"task": "cyber/03"}),)
    )
    path = tmp_path / "split.jsonl"
    path.write_text("\n".join(json.dumps(p.to_dict()) for p in prompts) + "\n")
    loaded = load_prompts(path)
    assert loaded[0].meta == {"task": "cyber/03"}
    assert loaded.instructions == PromptSet.from_jsonl(path).instructions
