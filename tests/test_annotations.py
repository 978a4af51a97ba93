"""Documents that carry calls: stripped text, exact positions, bad input counted per reason, the split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolformer.benchmarks import get_benchmark, load_examples
from toolformer.corpus.annotations import (
    ANSWER_NOT_A_NUMBER, BAD_RECORD, CALCULATOR_ERROR, DISAGREES, FORMULA_VS_ANSWER, UNPARSEABLE,
    AnnotationStats, BadAnnotation, read_annotated, split_equation, split_rows)
from toolformer.corpus.calls import insert_calls
from toolformer.corpus.syntax import HW3, TOOLFORMER, Call
from toolformer.errors import UserError

SHARED_MATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"

# real lines of the shared data files (GSM8K train lines 1, 2, 27; ASDiv 1, 30, 491, 1890; SVAMP 2, 352)
GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
               "$<<0.2*50=10>>10.\n#### 10"},
    {"question": "Jack is stranded on a desert island. He wants some salt to season his fish. He collects 2 liters "
                 "of seawater in an old bucket. If the water is 20% salt, how many ml of salt will Jack get when "
                 "all the water evaporates?",
     "answer": "First find how many liters of the seawater are salt: 2 liters * 20% = <<2*20*.01=.4>>.4 liters\n"
               "Then multiply that amount by 1000 ml/liter to find the number of ml of salt Jack gets: .4 liters "
               "* 1000 ml/liter = <<.4*1000=400>>400 ml\n#### 400"},
]
ASDIV = [
    {"body": "Seven red apples and two green apples are in the basket.", "question": "How many apples are in the "
     "basket?", "solution_type": "Addition", "answer": "9 (apples)", "formula": "7+2=9", "idx": 0},
    {"body": "Mrs. Hilt has two pennies, two dimes, and two nickels. Jacob has four pennies, one nickel, and one "
     "dime.", "question": "Who has more money?", "solution_type": "Comparison", "answer": "Mrs. Hilt",
     "formula": "2*1  (cent)+2 (dime)*10 (cent/dime) +2 (nickel)*5 (cent/nickel)=32 cents(Mrs. Hilt) > 4*1 "
                "(cent)+1 (nickel)*5 (cent/nickel) +1  (dime)*10 (cent/dime)=19 cents(Jacob)", "idx": 29},
    {"body": "Marian baked bread, cookies and pastries one Saturday at home for her family and friends this "
     "holiday season. She made 47 gingerbread cookies which she will distribute equally in tiny glass jars. If "
     "each jar is to contain six cookies each,", "question": "how many cookies will not be placed in a jar?",
     "solution_type": "Surplus", "answer": "5 (cookies)", "formula": "47/6=7 r5", "idx": 490},
    {"body": "Jerry was counting the money he received for his birthday. From his aunt he received $9. From his "
     "uncle he received $9. His best friends gave him $22, $23 and $22 and $22. And his sister gave him $7.",
     "question": "What is the mean of the money he received?", "solution_type": "Set-Operation",
     "answer": "16.3 (dollars)", "formula": "(9+9+22+23+22+22+7)/7=16.3", "idx": 1889},
]
SVAMP = [
    {"Answer": 19.0, "Question": "How much did Marco's strawberries weigh?", "Equation": "( 30.0 - 11.0 )",
     "Body": "Marco and his dad went strawberry picking. Marco's dad's strawberries weighed 11 pounds. If together "
             "their strawberries weighed 30 pounds.", "Type": "Subtraction", "ID": "chal-508", "idx": 1},
    {"Answer": 1.0, "Question": "How many apples are there on the tree now?", "Equation": "( ( 4.0 - 2.0 ) + 3.0 )",
     "Body": "Rachel's tree had 4 apples. She picked 2 apples from her tree. Thereafter 3 new apples grew on the "
             "tree.", "Type": "Addition", "ID": "chal-680", "idx": 351},
]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read(path: Path, fmt: str, **kw) -> tuple[list, AnnotationStats]:
    stats = AnnotationStats()
    return list(read_annotated(path, fmt, stats=stats, **kw)), stats


def calls_at(doc) -> list[tuple[str, str, str]]:
    """(text before, input, result) per annotation, to read positions at a glance."""
    text = doc.document.text
    return [(text[max(0, a.position - 12):a.position], a.input, a.result) for a in doc.annotations]


def test_gsm8k_real_lines(tmp_path):
    docs, stats = read(write(tmp_path / "gsm8k_train.jsonl", GSM8K), "gsm8k")
    natalia, weng, jack = docs
    assert natalia.id == "gsm8k_train:1" and natalia.document.text == (
        "Question: " + GSM8K[0]["question"] + "\nAnswer: Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\n#### 72")
    # canonical positions: before the space, where the token " 24" starts
    assert calls_at(natalia) == [(" sold 48/2 =", "48/2", "24"), ("sold 48+24 =", "48+24", "72")]
    assert natalia.document.text[natalia.annotations[0].position:].startswith(" 24 clips")
    # glued to "$": the call goes right after it
    assert calls_at(weng) == [("ns 12/60 = $", "12/60", "0.2"), ("0.2 x 50 = $", "0.2*50", "10")]
    assert "$0.2 per minute" in weng.document.text and "<<" not in weng.document.text
    assert calls_at(jack) == [("ters * 20% =", "2*20*.01", ".4"), ("0 ml/liter =", ".4*1000", "400")]
    assert (stats.documents, stats.annotations, dict(stats.skipped)) == (3, 6, {})


def test_written_back_by_build_the_calls_land_where_they_were(tmp_path):
    (natalia, *_), _ = read(write(tmp_path / "g.jsonl", GSM8K), "gsm8k")
    text = insert_calls(natalia.document.text, [(a.position, Call(a.tool, a.input, a.result))
                                                for a in natalia.annotations], TOOLFORMER)
    assert "Natalia sold 48/2 = [Calculator(48/2) → 24] 24 clips in May." in text
    # and our own syntax reads back to the same document and annotations
    (again,), stats = read(write(tmp_path / "t.jsonl", [{"id": "n", "text": text}]), "toolformer")
    assert again.document.text == natalia.document.text and again.annotations == natalia.annotations


def test_hw3_keeps_the_number_after_the_call(tmp_path):
    rows = [{"text": "Question: 8 apples each for 2 boys?\nAnswer: <<8*2>>16"},
            {"text": "He has <<8*2>>16 apples and <<16/3>>5.33 each, then <<1,000+5>>1,005.", "id": "x"}]
    (a, b), stats = read(write(tmp_path / "hw3.jsonl", rows), "hw3")
    assert a.document.text == "Question: 8 apples each for 2 boys?\nAnswer: 16"
    assert calls_at(a) == [("oys?\nAnswer:", "8*2", "16")]
    assert b.id == "x" and b.document.text == "He has 16 apples and 5.33 each, then 1,005."
    assert calls_at(b) == [("He has", "8*2", "16"), ("6 apples and", "16/3", "5.33"), ("3 each, then", "1,000+5", "1,005")]
    assert stats.annotations == 4


def test_hw3_data_read_and_written_again_is_the_same_text(tmp_path):
    text = "He has <<8*2>>16 apples and <<16/3>>5.33 each, then <<1,000+5>>1,005; <<5-8>>-3 at \\<<1\\>>1."
    (doc,), _ = read(write(tmp_path / "hw3.jsonl", [{"text": text}]), "hw3")
    assert doc.document.text == "He has 16 apples and 5.33 each, then 1,005; -3 at <<1>>1."
    assert insert_calls(doc.document.text, [(a.position, Call(a.tool, a.input, a.result)) for a in doc.annotations],
                        HW3) == text


def test_a_marker_after_a_backslash_is_text(tmp_path):
    (doc,), _ = read(write(tmp_path / "t.jsonl", [{"text": "Type \\[Calculator(2+2)] for [Calculator(2 + 2) → 4] 4."}]),
                     "toolformer")
    assert doc.document.text == "Type [Calculator(2+2)] for 4." and calls_at(doc) == [("or(2+2)] for", "2 + 2", "4")]
    (doc,), _ = read(write(tmp_path / "h.jsonl", [{"text": "GSM8K writes \\<<3*4\\>>12, we <<3*4>>12; x \\<< 2"}]), "hw3")
    assert doc.document.text == "GSM8K writes <<3*4>>12, we 12; x << 2" and calls_at(doc) == [("<3*4>>12, we", "3*4", "12")]
    # unescaped and not a call: a broken annotation, named by file and line, as before
    with pytest.raises(BadAnnotation, match=r"h2.jsonl:1: '<<' at character 2 is not part of an annotation"):
        list(read_annotated(write(tmp_path / "h2.jsonl", [{"text": "x << 2"}]), "hw3"))
    with pytest.raises(BadAnnotation, match=r"t2.jsonl:1: the call at character 2 does not parse"):
        list(read_annotated(write(tmp_path / "t2.jsonl", [{"text": "a [Calculator(2+2 b"}]), "toolformer"))


def test_toolformer_other_tools_are_not_checked(tmp_path):
    text = "It was [Calendar() → Today is Friday.] a Friday; [WikiSearch(Paris) → capital] Paris [1]."
    (doc,), stats = read(write(tmp_path / "t.jsonl", [{"text": text, "meta": {"date": "2013-04-19"}}]), "toolformer")
    assert doc.document.text == "It was a Friday; Paris [1]." and doc.document.meta == {"date": "2013-04-19"}
    assert [(a.tool, a.input, a.result) for a in doc.annotations] == [
        ("Calendar", "", "Today is Friday."), ("WikiSearch", "Paris", "capital")]


def test_equation_rows_real_lines(tmp_path):
    docs, stats = read(write(tmp_path / "asdiv.jsonl", ASDIV), "asdiv", skip_bad=True)
    (apples,) = docs
    assert apples.id == "asdiv:1" and apples.document.text == (
        "Question: Seven red apples and two green apples are in the basket. How many apples are in the basket?"
        "\nAnswer: 9")
    assert calls_at(apples) == [("ket?\nAnswer:", "7+2", "9")]
    # the same prompt and id `toolformer eval` builds from that row
    (example, *_), _ = load_examples("asdiv", data_file=tmp_path / "asdiv.jsonl", split="all")
    assert apples.document.text.startswith(example.prompt) and apples.id == example.id
    assert dict(stats.skipped) == {ANSWER_NOT_A_NUMBER: 1, UNPARSEABLE: 1, DISAGREES: 1}
    assert stats.examples[DISAGREES] == [f"{tmp_path / 'asdiv.jsonl'}:4: annotation 1 ('(9+9+22+23+22+22+7)/7') "
                                         f"says 16.3, the calculator gives 16.29"]

    (marco,), stats = read(write(tmp_path / "svamp.jsonl", SVAMP), "svamp", skip_bad=True)
    assert marco.document.text.endswith("weighed 30 pounds. How much did Marco's strawberries weigh?\nAnswer: 19")
    assert calls_at(marco) == [("igh?\nAnswer:", "( 30.0 - 11.0 )", "19")]
    assert dict(stats.skipped) == {DISAGREES: 1}  # SVAMP line 352: the equation gives 5, the answer is 1


def test_bad_lines_raise_with_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [{"text": "fine <<2+2=4>>4"}, {"text": "a <<2+2>>4 b"}])
    with pytest.raises(BadAnnotation, match=r"bad.jsonl:2: '<<2\+2>>' is not <<expression=number>>") as err:
        list(read_annotated(path, "gsm8k"))
    assert isinstance(err.value, UserError) and err.value.kind == UNPARSEABLE
    path = write(tmp_path / "wrong.jsonl", [{"text": "so <<48/2=25>>25"}])
    with pytest.raises(BadAnnotation, match=r"wrong.jsonl:1: annotation 1 \('48/2'\) says 25, the calculator gives 24"):
        list(read_annotated(path, "gsm8k"))


def test_bad_lines_are_counted_per_reason(tmp_path):
    rows = [{"text": "ok <<1+1=2>>2 and <<2*3=6>>6"},
            {"text": "unclosed <<1+1=2 here"},                      # unparseable
            {"text": "stray >> marker"},                           # unparseable
            {"text": "no result <<1+1>>2"},                         # unparseable
            {"text": "words <<2 apples + 3=5>>5"},                  # calculator error
            {"text": "off <<10/4=2>>2"},                            # disagrees (2.5)
            {"text": "rounded <<1/3=0.333>>0.333 fine"},             # agrees with 0.33
            "not json",                                            # bad record
            {"words": "no text"},                                  # bad record
            {"text": "off again <<7*7=48>>48"}]                     # disagrees
    path = write(tmp_path / "mixed.jsonl", rows)
    docs, stats = read(path, "gsm8k", skip_bad=True)
    assert [d.id for d in docs] == ["mixed:1", "mixed:7"] and stats.annotations == 3
    assert dict(stats.skipped) == {UNPARSEABLE: 3, CALCULATOR_ERROR: 1, DISAGREES: 2, BAD_RECORD: 2}
    assert stats.examples[UNPARSEABLE][1].startswith(f"{path}:3: '>>' at character 6 is not part of an annotation")
    assert stats.disagreeing_kept == 0

    docs, stats = read(path, "gsm8k", skip_bad=True, keep_disagreeing=True)
    assert [d.id for d in docs] == ["mixed:1", "mixed:6", "mixed:7", "mixed:10"]
    assert docs[1].annotations[0].result == "2"  # kept as annotated; execute runs the calculator again
    assert stats.disagreeing_kept == 2 and DISAGREES not in stats.skipped and len(stats.examples[DISAGREES]) == 2


def test_equation_bad_lines(tmp_path):
    rows = [{"question": "q?", "answer": "7", "formula": "3+4=7"},
            {"question": "q?", "answer": "8", "formula": "3+4=7"},          # formula vs answer
            {"question": "q?", "answer": "8", "formula": "3+4"},            # disagrees: no result, answer 8
            {"question": "q?", "formula": "3+4=7"},                          # bad record: no answer
            {"question": "q?", "answer": "7", "formula": "x+4=11; x=7"}]    # unparseable
    docs, stats = read(write(tmp_path / "eq.jsonl", rows), "asdiv", skip_bad=True)
    assert [d.document.text for d in docs] == ["Question: q?\nAnswer: 7"]
    assert dict(stats.skipped) == {FORMULA_VS_ANSWER: 1, DISAGREES: 1, BAD_RECORD: 1, UNPARSEABLE: 1}


@pytest.mark.parametrize("equation, parts", [
    ("7+2=9", ("7+2", "9")), ("( 290.0 / 2.0 )", ("( 290.0 / 2.0 )", None)), ("x=(5+3)*2", ("(5+3)*2", None)),
    ("X = 5 + 3", ("5 + 3", None)), (" (74-(29+25))/2=10 ", ("(74-(29+25))/2", "10")),
    ("47/6=7 r5", None), ("", None), ("=5", None), ("x+4=11; x=7", None),
    # ASDiv's units are dropped; of chained steps the last, which gives the answer, is the call
    ("6 (penny)*1 (cent/penny) + 3 (nickel)*5 (cent/nickel) = 21 (cent)", ("6 *1  + 3 *5", "21")),
    ("99+99=198 cents", ("99+99", "198")), ("3+5=8; 8-2=6", ("8-2", "6")),
    ("(1 (hour)*60 (min/hour)) = 60 (min); 60 + 30 + 45 = 135 ", ("60 + 30 + 45", "135")),
    ("2(6+w)=20", ("2(6+w)", "20"))])  # a variable stays: the calculator refuses it, counted
def test_split_equation(equation, parts):
    assert split_equation(equation) == parts


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown annotation format 'calc-x'.*gsm8k, hw3, toolformer, asdiv, svamp, mawps"):
        list(read_annotated(write(tmp_path / "a.jsonl", GSM8K), "calc-x"))
    with pytest.raises(UserError, match="annotated data not found"):
        list(read_annotated(tmp_path / "missing.jsonl", "gsm8k"))


def test_split_is_the_evaluations_own(tmp_path):
    # the ASDiv rows split as `toolformer eval` splits them: its test part is never trained on
    asdiv = write(tmp_path / "asdiv.jsonl", [ASDIV[0]] + [
        {"body": f"Ann has {i} apples and gets {i + 1} more.", "question": "How many apples does she have?",
         "answer": f"{2 * i + 1} (apples)", "formula": f"{i}+{i + 1}={2 * i + 1}"} for i in range(1, 60)])
    docs, _ = read(asdiv, "asdiv")
    split = get_benchmark("asdiv").split
    train, test = split_rows(docs, split.test_fraction, split.seed)
    evaluated, _ = load_examples("asdiv", data_file=asdiv)
    assert {d.id for d in test} == {e.id for e in evaluated} and 0 < len(test) < len(train)
    # fixed by each problem alone: not by order, nor by which other rows are there
    _, again = split_rows(list(reversed(docs))[::2], split.test_fraction, split.seed)
    assert {d.id for d in again} == {d.id for d in test} & {d.id for d in docs[::-1][::2]}
    raw = [json.loads(line) for line in asdiv.read_text().splitlines()]
    assert len(split_rows(raw, split.test_fraction, split.seed)[1]) == len(test)


@pytest.mark.skipif(not SHARED_MATH.is_dir(), reason="needs the shared data folder")
def test_whole_shared_files():
    _, stats = read(SHARED_MATH / "asdiv.jsonl", "asdiv", skip_bad=True)
    # the 37 calculator errors: 35 number sequences ("5, 7, 10, 14"), one algebra, one "3(75+15)"
    assert (stats.documents, dict(stats.skipped)) == (1772, {ANSWER_NOT_A_NUMBER: 131, CALCULATOR_ERROR: 37,
                                                             UNPARSEABLE: 222, FORMULA_VS_ANSWER: 47, DISAGREES: 6})
    _, stats = read(SHARED_MATH / "svamp.jsonl", "svamp", skip_bad=True)
    assert (stats.documents, dict(stats.skipped)) == (999, {DISAGREES: 1})


def test_annotated_candidates_need_the_tokenizer_alone(tmp_path, monkeypatch):
    """Cutting windows for annotated calls loads no model weights (on a Ray driver too): the
    candidates are written with the model's tokenizer only, at the annotations' positions."""
    import toolformer.lm.backend
    from toolformer.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(toolformer.lm.backend, "get_backend", no_model)
    corpus = write(tmp_path / "g.jsonl", GSM8K)
    assert main(["sample", "--tool", "calculator", "--run", "r", "--runs-dir", str(tmp_path), "--corpus", str(corpus),
                 "--from-annotations", "gsm8k", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r" / "calculator" / "candidates.jsonl").open()]
    assert [r["input"] for r in rows] == ["48/2", "48+24", "12/60", "0.2*50", "2*20*.01", ".4*1000"]
